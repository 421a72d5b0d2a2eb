"""A deterministic Telco-like churn CSV of any size, streamed to disk.

    python bench/generate_data.py --rows 1000000 --seed 7 --out bench/out/telco-1000000.csv

The columns, their order and spelling are those of the IBM Telco Customer Churn file in
data/churn.csv, and so are the distributions and the dependencies between columns; the numbers
below were measured on that file (7,043 rows):
- tenure follows the file's own histogram (0..72 months: the spikes at 1 and 72 included);
- Contract depends on tenure, PaymentMethod on Contract, Dependents on Partner, PaperlessBilling
  on InternetService, each add-on on InternetService ("No internet service" when there is none),
  MultipleLines on PhoneService ("No phone service");
- MonthlyCharges is the file's own linear price list (a least-squares fit, residual sd 1.02):
  20.05 phone + 5.01 multiple lines + 25.05 DSL | 50.01 fibre + ~5 per protection add-on
  + ~10 per streaming service, rounded to 0.05;
- TotalCharges ~= tenure x MonthlyCharges x (1 + N(0, 0.05)); a single space when tenure is 0,
  the file's quirk (11 such rows per 7,043);
- Churn is drawn from a logistic model fitted to the file (5-fold CV ROC AUC 0.85), so a model
  trained on generated data is about as good as one trained on the real data, and the local
  pipeline's quality gate (0.80) means the same thing;
- customerID has the file's form `dddd-LLLLL`, unique for every row (an affine bijection of the
  row number over all 10^4 x 26^5 ids).

Deterministic: the same seed gives the same bytes, and a file of N rows is the first N rows of any
larger file with the same seed (rows are made in fixed chunks, each with its own seeded generator).
Memory stays flat (one chunk at a time), so 1M rows need ~100 MB.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

COLUMNS = (
    "customerID", "gender", "SeniorCitizen", "Partner", "Dependents", "tenure", "PhoneService",
    "MultipleLines", "InternetService", "OnlineSecurity", "OnlineBackup", "DeviceProtection",
    "TechSupport", "StreamingTV", "StreamingMovies", "Contract", "PaperlessBilling", "PaymentMethod",
    "MonthlyCharges", "TotalCharges", "Churn",
)
CHUNK = 10_000  # rows per seeded generator: fixed, so files of different sizes share their prefix

# tenure (months) 0..72: the histogram of data/churn.csv
TENURE_COUNTS = (
    11, 613, 238, 200, 176, 133, 110, 131, 123, 119, 116, 99, 117, 109, 76, 99, 80, 87, 97, 73, 71, 63,
    90, 85, 94, 79, 79, 72, 57, 72, 72, 65, 69, 64, 65, 88, 50, 65, 59, 56, 64, 70, 65, 65, 51, 61, 74,
    68, 64, 66, 68, 68, 80, 70, 68, 64, 80, 65, 67, 60, 76, 76, 70, 72, 80, 76, 89, 98, 100, 95, 119,
    170, 362,
)
# Contract by tenure band (upper bounds of the bands), P(month-to-month), P(one year); rest two year
CONTRACT_BANDS = (0, 6, 12, 24, 36, 48, 60, 72)
CONTRACT_P = ((0.0, 0.091), (0.961, 0.026), (0.824, 0.121), (0.720, 0.192), (0.584, 0.300),
              (0.415, 0.352), (0.281, 0.386), (0.077, 0.222))
CONTRACTS = np.array(["Month-to-month", "One year", "Two year"], dtype=object)
PAYMENTS = np.array(
    ["Electronic check", "Mailed check", "Bank transfer (automatic)", "Credit card (automatic)"], dtype=object
)
PAYMENT_P = {  # by contract index
    0: (0.477, 0.230, 0.152, 0.141),
    1: (0.236, 0.229, 0.265, 0.270),
    2: (0.099, 0.225, 0.333, 0.343),
}
INTERNET = np.array(["DSL", "Fiber optic", "No"], dtype=object)
INTERNET_P = (0.3437, 0.4396, 0.2167)
PAPERLESS_P = (0.549, 0.774, 0.292)  # P(Yes) by internet service
# P(Yes) of each add-on given DSL / fibre (without internet: "No internet service")
ADDONS = {
    "OnlineSecurity": (0.487, 0.271),
    "OnlineBackup": (0.449, 0.434),
    "DeviceProtection": (0.440, 0.438),
    "TechSupport": (0.487, 0.280),
    "StreamingTV": (0.395, 0.565),
    "StreamingMovies": (0.405, 0.566),
}
# MonthlyCharges = linear price list (least squares on data/churn.csv) + N(0, PRICE_SD)
PRICE = {"intercept": -0.097, "phone": 20.052, "multi": 5.012, "dsl": 25.049, "fiber": 50.006,
         "OnlineSecurity": 5.013, "OnlineBackup": 4.991, "DeviceProtection": 5.021, "TechSupport": 5.029,
         "StreamingTV": 9.969, "StreamingMovies": 9.963}
PRICE_SD = 1.025
# logit P(churn): logistic regression fitted on data/churn.csv
CHURN = {"intercept": 0.748, "senior": 0.223, "partner": 0.034, "dependents": -0.133, "log_tenure": -0.728,
         "fiber": 0.833, "no_internet": -0.695, "OnlineSecurity": -0.337, "TechSupport": -0.302,
         "OnlineBackup": -0.141, "DeviceProtection": 0.005, "StreamingTV": 0.264, "StreamingMovies": 0.275,
         "multi": 0.35, "phone": -0.629, "one_year": -0.697, "two_year": -1.679, "paperless": 0.352,
         "electronic_check": 0.299, "mailed_check": -0.084, "monthly_per_100": 0.431}

ID_SPACE = 10_000 * 26**5
ID_MULTIPLIER = 2_654_435_761  # coprime to ID_SPACE (= 2^9 5^4 13^5), so i -> a*i+b is a bijection
ID_OFFSET = 48_271_000_003
LETTERS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), dtype=object)
YES_NO = np.array(["No", "Yes"], dtype=object)


def customer_ids(start: int, count: int, seed: int) -> np.ndarray:
    index = np.arange(start, start + count, dtype=np.int64)
    code = (index * ID_MULTIPLIER + ID_OFFSET + seed * 7_919) % ID_SPACE
    letters, digits = np.divmod(code, 10_000)
    parts = []
    for _ in range(5):
        letters, rest = np.divmod(letters, 26)
        parts.append(LETTERS[rest])
    word = parts[4] + parts[3] + parts[2] + parts[1] + parts[0]
    return np.char.zfill(digits.astype(str), 4).astype(object) + "-" + word


def _choice(rng: np.random.Generator, n: int, probabilities) -> np.ndarray:
    """Index drawn from `probabilities` (rows: one distribution per row, or one for all)."""
    p = np.asarray(probabilities, dtype=float)
    cumulative = np.cumsum(p, axis=-1)
    cumulative /= cumulative[..., -1:]
    u = rng.random(n)
    if p.ndim == 1:
        return np.searchsorted(cumulative, u, side="right").clip(max=p.shape[-1] - 1)
    return (u[:, None] >= cumulative).sum(axis=1).clip(max=p.shape[-1] - 1)


def _money(values: np.ndarray) -> np.ndarray:
    """Telco's number form: 29.85, 42.3, 1889.5, 20 -> as Python's float repr writes it."""
    return np.array([repr(v) for v in values.tolist()], dtype=object)


def make_chunk(seed: int, chunk: int, count: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, chunk])
    n = count
    out: dict[str, np.ndarray] = {"customerID": customer_ids(chunk * CHUNK, n, seed)}
    out["gender"] = np.where(rng.random(n) < 0.5048, "Male", "Female").astype(object)
    senior = rng.random(n) < 0.1621
    partner = rng.random(n) < np.where(senior, 0.502, 0.479)
    dependents = rng.random(n) < np.where(partner, 0.514, 0.099)
    tenure = _choice(rng, n, TENURE_COUNTS)
    band = np.searchsorted(CONTRACT_BANDS, tenure, side="left")
    contract_p = np.array([(a, b, 1.0 - a - b) for a, b in CONTRACT_P])[band]
    contract = _choice(rng, n, contract_p)
    payment = _choice(rng, n, np.array([PAYMENT_P[c] for c in range(3)])[contract])
    phone = rng.random(n) < 0.9032
    multi = phone & (rng.random(n) < 0.467)
    internet = _choice(rng, n, INTERNET_P)
    dsl, fiber, no_internet = internet == 0, internet == 1, internet == 2
    paperless = rng.random(n) < np.array(PAPERLESS_P)[internet]
    addons = {}
    for name, (p_dsl, p_fiber) in ADDONS.items():
        addons[name] = ~no_internet & (rng.random(n) < np.where(dsl, p_dsl, p_fiber))

    monthly = (
        PRICE["intercept"] + PRICE["phone"] * phone + PRICE["multi"] * multi + PRICE["dsl"] * dsl
        + PRICE["fiber"] * fiber + sum(PRICE[name] * flag for name, flag in addons.items())
        + rng.normal(0.0, PRICE_SD, n)
    )
    monthly = np.maximum(np.round(monthly * 20) / 20, 18.25).round(2)
    total = np.round(tenure * monthly * (1 + rng.normal(0.0, 0.05, n)), 2)
    total = np.maximum(total, monthly)

    logit = (
        CHURN["intercept"] + CHURN["senior"] * senior + CHURN["partner"] * partner
        + CHURN["dependents"] * dependents + CHURN["log_tenure"] * np.log1p(tenure)
        + CHURN["fiber"] * fiber + CHURN["no_internet"] * no_internet
        + sum(CHURN[name] * addons[name] for name in ADDONS)
        + CHURN["multi"] * multi + CHURN["phone"] * phone
        + CHURN["one_year"] * (contract == 1) + CHURN["two_year"] * (contract == 2)
        + CHURN["paperless"] * paperless + CHURN["electronic_check"] * (payment == 0)
        + CHURN["mailed_check"] * (payment == 1) + CHURN["monthly_per_100"] * monthly / 100
    )
    churn = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))

    out["SeniorCitizen"] = senior.astype(np.int8).astype(str).astype(object)
    out["Partner"] = YES_NO[partner.astype(int)]
    out["Dependents"] = YES_NO[dependents.astype(int)]
    out["tenure"] = tenure.astype(str).astype(object)
    out["PhoneService"] = YES_NO[phone.astype(int)]
    out["MultipleLines"] = np.where(phone, YES_NO[multi.astype(int)], "No phone service").astype(object)
    out["InternetService"] = INTERNET[internet]
    for name, flag in addons.items():
        out[name] = np.where(no_internet, "No internet service", YES_NO[flag.astype(int)]).astype(object)
    out["Contract"] = CONTRACTS[contract]
    out["PaperlessBilling"] = YES_NO[paperless.astype(int)]
    out["PaymentMethod"] = PAYMENTS[payment]
    out["MonthlyCharges"] = _money(monthly)
    out["TotalCharges"] = np.where(tenure == 0, " ", _money(total)).astype(object)
    out["Churn"] = YES_NO[churn.astype(int)]
    return out



def write_csv(path: Path, rows: int, seed: int) -> None:
    """Write `rows` rows to `path` (via a temporary file, renamed when complete)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as out:
        out.write(",".join(COLUMNS) + "\n")
        for chunk in range((rows + CHUNK - 1) // CHUNK):
            count = min(CHUNK, rows - chunk * CHUNK)
            columns = make_chunk(seed, chunk, count)
            lines = columns[COLUMNS[0]]
            for name in COLUMNS[1:]:
                lines = lines + "," + columns[name]
            out.write("\n".join(lines.tolist()))
            out.write("\n")
    tmp.replace(path)


def ensure(path: Path, rows: int, seed: int) -> Path:
    """Generate `path` unless a complete file of `rows` rows is already there (checked by size stamp)."""
    stamp = path.with_name(path.name + ".stamp")
    wanted = f"rows={rows} seed={seed} chunk={CHUNK}\n"
    if path.exists() and stamp.exists() and stamp.read_text() == wanted + f"bytes={path.stat().st_size}\n":
        return path
    write_csv(path, rows, seed)
    stamp.write_text(wanted + f"bytes={path.stat().st_size}\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    start = time.perf_counter()
    write_csv(args.out, args.rows, args.seed)
    print(f"wrote {args.rows} rows to {args.out} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
