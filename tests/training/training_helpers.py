"""Helpers for the training-script tests: a Telco-derived training-set CSV and SageMaker-like runs."""

from __future__ import annotations

import csv
import importlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pipeline.local_aws.training_job import toolkit_args

ROOT = Path(__file__).resolve().parents[2]
TRAINING_DIR = ROOT / "training"
RAW_CSV = ROOT / "data" / "churn.csv"
SPEC = ROOT / "data" / "churn.spec.json"

_SPEC = json.loads(SPEC.read_text(encoding="utf-8"))
# What the pipeline passes for the bundled spec (churn.config.training_hyperparameters).
TELCO_COLUMNS = {"id_column": _SPEC["record_identifier"]["name"], "label_column": _SPEC["label"]["name"],
                 "categorical_columns": [f["name"] for f in _SPEC["features"] if f["type"] == "String"]}


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


def run_training(root: Path, csv_files: dict[str, str], hyperparameters: dict | None = None,
                 extra_args: tuple[str, ...] = ()) -> SageMakerRun:
    """Lay out an /opt/ml-like tree under `root` and run `python -m train_model` there as the SageMaker
    training toolkit does: cwd = the code dir, the hyperparameters (the Telco columns unless overridden)
    both as SM_HPS and as arguments, SM_* directories."""
    hps = {**TELCO_COLUMNS, **(hyperparameters or {})}
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
        "SM_HPS": json.dumps(hps),
        "SM_CURRENT_HOST": "algo-1",
        "SM_HOSTS": json.dumps(["algo-1"]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    completed = subprocess.run([sys.executable, "-m", "train_model", *toolkit_args(hps), *extra_args],
                               cwd=TRAINING_DIR, env=env, capture_output=True, text=True, timeout=300, check=False)
    return SageMakerRun(root=root, completed=completed)


def default_params() -> dict:
    """The script's hyperparameter defaults (training/hyperparameters.py, on sys.path as in the container)."""
    if str(TRAINING_DIR) not in sys.path:
        sys.path.insert(0, str(TRAINING_DIR))
    return importlib.import_module("hyperparameters").default_params()


def fit_small_model(train_model, folder: Path, rows: int = 400, **overrides) -> tuple[Path, object]:
    """A small model trained in-process by the script's own functions and saved as the job saves it:
    (model directory, the training frame)."""
    params = {**default_params(), **TELCO_COLUMNS, "num_round": 40, "early_stopping_rounds": 10,
              **overrides}
    channel, model_dir = folder / "channel", folder / "model"
    channel.mkdir(parents=True)
    model_dir.mkdir()
    (channel / "training-set.csv").write_text(to_csv_text(*training_set_rows(limit=rows)), encoding="utf-8")
    frame, source = train_model.read_training_data(channel, params)
    result, _, _ = train_model.train(train_model.prepare(frame, params, source), params)
    train_model.save_model(model_dir, result.model)
    return model_dir, frame
