"""The training script bundle: a byte-for-byte reproducible .tar.gz of training/*.py for script mode."""

from __future__ import annotations

import gzip
import io
import tarfile
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
