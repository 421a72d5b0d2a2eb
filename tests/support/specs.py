"""Feature specs and test doubles the tests share: a history group, the fake Feature Store endpoint."""

from __future__ import annotations

import builtins
import errno
import importlib.util
import io
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from churn.schema import FeatureSpec

ROOT = Path(__file__).resolve().parents[2]

# Two groups: `activity` is a history (its rows carry their own event times, column `snapshot`), and the
# labels are observed at `observed`.
HISTORY_SPEC = FeatureSpec.from_dict({
    "feature_groups": [{"name": "activity", "record_identifier": {"name": "customer_id", "type": "String"},
                        "event_time": {"name": "event_time", "source": "snapshot", "type": "String"},
                        "features": [{"name": "visits", "type": "Integral"}]}],
    "labels": {"record_identifier": {"name": "customer_id", "type": "String"},
               "event_time": {"name": "observed", "source": "observed", "type": "String"},
               "label": {"name": "churned", "type": "Integral"}},
})
HISTORY = HISTORY_SPEC.group("activity")
UNREADABLE_SPEC_KINDS = ("latin-1", "utf-16", "folder", "symlink-loop")


def unreadable_spec_file(folder: Path, kind: str) -> Path:
    """A --spec path in `folder` that cannot be read as UTF-8 text, of one of UNREADABLE_SPEC_KINDS."""
    path = folder / f"{kind}.spec.json"
    if kind == "latin-1":
        path.write_bytes(b'{"a": 1}\xff')
    elif kind == "utf-16":
        path.write_text('{"a": 1}', encoding="utf-16")
    elif kind == "folder":
        path.mkdir()
    else:
        path.symlink_to(path)
    return path


def deny_reading(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """Opening `path` fails as it does for a file the user may not read (chmod cannot make one for the
    tests: as root they read any file); every other file opens as usual."""
    real_open = builtins.open

    def open_unless_denied(file, *args, **kwargs):
        if isinstance(file, str | os.PathLike) and os.fspath(file) == os.fspath(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_unless_denied)
    monkeypatch.setattr(io, "open", open_unless_denied)  # what Path.open calls


def fake_featurestore_endpoint() -> ModuleType:
    """bench/fake_featurestore_endpoint.py (the benchmark's Feature Store runtime over HTTP) as a module."""
    path = ROOT / "bench" / "fake_featurestore_endpoint.py"
    spec = importlib.util.spec_from_file_location("fake_featurestore_endpoint", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module
