"""The training script bundle: a byte-for-byte reproducible .tar.gz of training/*.py for script mode."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import tempfile
from pathlib import Path

from churn.layout import TRAINING_ENTRY_POINT as ENTRY_POINT


def training_tarball_bytes(source_dir: Path) -> bytes:
    """Every top-level *.py of `source_dir`, sorted, with no time, owner or mode noise.

    SageMaker's script mode downloads `sagemaker_submit_directory` and untars it, so the bundle
    must be a gzip tarball; making it deterministic keeps the asset hash (and so the stack) stable
    between synths of the same code.
    """
    files = sorted(p for p in Path(source_dir).glob("*.py") if p.is_file())
    if not any(p.name == ENTRY_POINT for p in files):
        raise FileNotFoundError(f"{source_dir}/{ENTRY_POINT} not found: the training job has no entry point")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in files:
            data = path.read_bytes()
            info = tarfile.TarInfo(name=path.name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    compressed = io.BytesIO()
    # filename="" and mtime=0 keep the gzip header free of the build's name and time.
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return compressed.getvalue()


def build_training_tarball(source_dir: Path, build_dir: Path | None = None) -> Path:
    """Write the bundle to `build_dir` (default: a per-user temp folder) under a content-hashed name."""
    payload = training_tarball_bytes(source_dir)
    digest = hashlib.sha256(payload).hexdigest()[:16]
    target_dir = Path(build_dir) if build_dir else Path(tempfile.gettempdir()) / "churn-cdk-build"
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"training-code-{digest}.tar.gz"
    if not target.exists() or target.read_bytes() != payload:
        # Write then rename: concurrent synths (tests, `cdk synth`) never see a half-written file.
        fd, tmp = tempfile.mkstemp(dir=target_dir, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, target)
    return target
