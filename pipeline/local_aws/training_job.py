"""A SageMaker training job on this machine: the script run under the XGBoost container's contract.

What the container (sagemaker-containers 2.8.6 in script mode) does, and what this does alike: an
/opt/ml-like tree (`input/data/<channel>`, `model`, `output`, `output/data`), the `SM_*` environment,
and `python -m <entry point> --name value ...` with the hyperparameters sorted by name, each value
the `str()` of its decoded form (so a list arrives as `['a', 'b']`). On success the model directory
becomes `model.tar.gz`. The local run and the moto harness both run training through here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from churn.layout import TRAINING_CHANNEL


@dataclass(frozen=True)
class JobDirectories:
    """A training job's /opt/ml tree in `root`: where the SM_* variables point."""

    root: Path

    def channel(self, name: str) -> Path:
        return self.root / "input" / "data" / name

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def output_data(self) -> Path:
        return self.output / "data"


def toolkit_args(hyperparameters: dict[str, Any]) -> list[str]:
    """The script's arguments as sagemaker-containers builds them (`_mapping.to_cmd_args`)."""
    return [token for name in sorted(hyperparameters) for token in (f"--{name}", str(hyperparameters[name]))]


@dataclass(frozen=True)
class TrainingRun:
    command: list[str]
    returncode: int | None  # None: stopped at the time limit
    log: Path

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0

    def warnings(self) -> list[str]:
        """The log's warning lines: the script's (`[train_model] WARNING: ...`) and XGBoost's own."""
        lines = self.log.read_text(encoding="utf-8").splitlines() if self.log.exists() else []
        return [line for line in lines if "WARNING: " in line]

    def script_failure(self) -> str:
        """The script's own reason: its `output/failure` file, else its log's last line."""
        failure = JobDirectories(self.log.parent).output / "failure"
        reason = failure.read_text(encoding="utf-8").strip() if failure.exists() else ""
        if not reason:
            lines = self.log.read_text(encoding="utf-8").strip().splitlines()
            reason = lines[-1] if lines else f"exit code {self.returncode}"
        return reason


def run_training(code_dir: Path, entry_point: str, root: Path, hyperparameters: dict[str, Any], *,
                 channels: tuple[str, ...] = (TRAINING_CHANNEL,), timeout: float | None = None) -> TrainingRun:
    """Run `entry_point` (a module of `code_dir`) as the container runs it, under SageMaker's training
    environment contract in `root` (its output directories created), its output in `root/training.log`."""
    dirs = JobDirectories(root)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SM_"))},
        **{f"SM_CHANNEL_{c.upper()}": str(dirs.channel(c)) for c in channels},
        "SM_CHANNELS": json.dumps(list(channels)),
        "SM_MODEL_DIR": str(dirs.model),
        "SM_OUTPUT_DATA_DIR": str(dirs.output_data),
        "SM_OUTPUT_DIR": str(dirs.output),
        "SM_HPS": json.dumps(hyperparameters),
        "SM_CURRENT_HOST": "algo-1",
        "SM_HOSTS": json.dumps(["algo-1"]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for folder in (dirs.model, dirs.output_data):
        folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", Path(entry_point).stem, *toolkit_args(hyperparameters)]
    log = root / "training.log"
    with open(log, "w", encoding="utf-8") as stream:
        try:
            completed = subprocess.run(command, cwd=code_dir, env=env, stdout=stream, stderr=subprocess.STDOUT,
                                       timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return TrainingRun(command, None, log)
    return TrainingRun(command, completed.returncode, log)


def pack_model(root: Path, artifact: Path) -> Path:
    """`root/model` as SageMaker packs it: model.tar.gz, files at its top level."""
    with tarfile.open(artifact, "w:gz") as archive:
        for path in sorted(JobDirectories(root).model.iterdir()):
            archive.add(path, arcname=path.name)
    return artifact
