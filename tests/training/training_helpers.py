"""Helpers for the training-script tests: a Telco-derived training-set CSV and SageMaker-like runs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRAINING_DIR = ROOT / "training"
RAW_CSV = ROOT / "data" / "churn.csv"
SPEC = ROOT / "data" / "churn.spec.json"

METRIC_RE = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def _quote(value: str | None) -> str:
    """Athena/DuckDB CSV shape: every value double-quoted, NULL as an empty unquoted field."""
    if value is None or value.strip() == "":
        return ""
    return '"' + value.strip().replace('"', '""') + '"'


def training_set_rows(limit: int | None = None) -> tuple[list[str], list[list[str | None]]]:
    """(columns, rows) of the training set built from data/churn.csv: snake_case names per the spec,
    label Yes/No -> 1/0, blanks -> NULL, ordered by customer id like the training-set SQL."""
    spec = json.loads(SPEC.read_text(encoding="utf-8"))
    mapping = [(spec["record_identifier"]["source"], spec["record_identifier"]["name"])]
    mapping += [(f["source"], f["name"]) for f in spec["features"]]
    mapping.append((spec["label"]["source"], spec["label"]["name"]))
    with open(RAW_CSV, newline="", encoding="utf-8") as handle:
        raw = sorted(csv.DictReader(handle), key=lambda r: r["customerID"])
    rows = []
    for record in raw[:limit]:
        row: list[str | None] = []
        for source, name in mapping:
            value = record[source].strip()
            if name == spec["label"]["name"]:
                value = "1" if value == "Yes" else "0"
            row.append(value or None)
        rows.append(row)
    return [name for _, name in mapping], rows


def to_csv_text(columns: list[str], rows: list[list[str | None]]) -> str:
    lines = [",".join(_quote(c) for c in columns)]
    lines += [",".join(_quote(v) for v in row) for row in rows]
    return "\n".join(lines) + "\n"


@dataclass
class SageMakerRun:
    root: Path
    completed: subprocess.CompletedProcess

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def output_data_dir(self) -> Path:
        return self.root / "output" / "data"

    @property
    def failure_file(self) -> Path:
        return self.root / "output" / "failure"

    @property
    def stdout(self) -> str:
        return self.completed.stdout

    @property
    def stderr(self) -> str:
        return self.completed.stderr


def run_training(root: Path, csv_files: dict[str, str], args: list[str] | None = None,
                 hps: dict | None = None) -> SageMakerRun:
    """Lay out an /opt/ml-like tree under `root` and run `python -m train_model` there as the
    SageMaker training toolkit does (cwd = the code dir, `--name value` args, SM_* env)."""
    channel = root / "input" / "data" / "train"
    channel.mkdir(parents=True)
    for name, text in csv_files.items():
        (channel / name).write_text(text, encoding="utf-8")
        # Athena writes a metadata file next to each result CSV: the script must skip it.
        (channel / f"{name}.metadata").write_bytes(b"\x00\x01not a csv\xff")
    (root / "model").mkdir()
    (root / "output" / "data").mkdir(parents=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SM_") and k != "MPLBACKEND"},
        "SM_CHANNEL_TRAIN": str(channel),
        "SM_MODEL_DIR": str(root / "model"),
        "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
        "SM_OUTPUT_DIR": str(root / "output"),
        "SM_CHANNELS": json.dumps(["train"]),
        "SM_HPS": json.dumps(hps or {}),
        "SM_CURRENT_HOST": "algo-1",
        "SM_HOSTS": json.dumps(["algo-1"]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    completed = subprocess.run([sys.executable, "-m", "train_model", *(args or [])], cwd=TRAINING_DIR, env=env,
                               capture_output=True, text=True, timeout=300, check=False)
    return SageMakerRun(root=root, completed=completed)
