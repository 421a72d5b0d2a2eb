"""The local model registry: one JSON file listing every run's model, metrics and approval.

It mirrors a SageMaker model package group: approved models get increasing version numbers,
rejected ones are kept for the record (with the gate's reason) but get no version. Two runs
registering at once (threads or processes) never get the same version: every read-modify-write
holds an exclusive `flock` on `<registry>.lock`, and the file is replaced atomically. A model's files are
recorded relative to the workspace (the registry's folder), so a moved or copied workspace uses its own.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from churn.model_quality import APPROVED

REJECTED = "Rejected"
PATH_FIELDS = ("model_artifact", "evaluation", "report")  # a model's files, in its run's directory


def relative_paths(record: dict[str, Any], fields: Iterable[str], root: Path) -> dict[str, Any]:
    """`record` with its `fields` (paths) relative to the workspace `root` where they are in it: what the
    workspace's files record, so that they name the workspace's own files wherever it is moved or copied."""
    inside = [name for name in fields if record.get(name) and Path(record[name]).is_relative_to(root)]
    return {**record, **{name: str(Path(record[name]).relative_to(root)) for name in inside}}


def write_record(path: Path, record: Any) -> None:
    """`record` as the JSON of `path`, whole: written aside, then renamed, so that a reader (or a crash) never
    meets half of it."""
    aside = path.with_name(f".{path.name}.tmp")
    aside.write_text(json.dumps(record, indent=2), encoding="utf-8")
    os.replace(aside, path)


def resolved_paths(record: dict[str, Any], fields: Iterable[str], root: Path) -> dict[str, Any]:
    """`record` with its relative `fields` in the workspace `root` it was read from; an absolute one (as an
    earlier version recorded them) stays as it is."""
    return {**record, **{name: str(root / record[name]) for name in fields if record.get(name)}}


def checked(kind: type, record: Any) -> dict[str, Any]:
    """`record` (JSON read back from a workspace file) as the dataclass `kind` it was written from, as a dict with
    each field of its type (pydantic's validation: a field an earlier version did not write takes its default, one
    `kind` does not have is left out); ValueError naming the first field that is not (a hand edit, a half copy)."""
    from pydantic import ValidationError  # ~35 ms to import: only the commands that read a record pay it

    if not isinstance(record, dict):
        raise ValueError(f"not a JSON object but {json.dumps(record)[:40]}")
    try:
        return asdict(_adapter(kind).validate_python(record))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(map(str, error["loc"]))
        raise ValueError(f"{where}: {error['msg']}, got {json.dumps(error['input'], default=str)[:40]}") from None


@functools.cache
def _adapter(kind: type) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(kind)


@dataclass
class ModelEntry:
    run_id: str
    created: str
    status: str  # Approved / Rejected
    validation_auc: float
    threshold: float
    model_artifact: str
    evaluation: str
    report: str
    version: int | None = None
    reason: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)


class RegistryError(RuntimeError):
    """The registry file cannot be read, or is not the registry this project writes; the message names it."""


@dataclass
class _Registry:
    """registry.json, as `add` writes it."""

    models: list[ModelEntry] = field(default_factory=list)


class LocalModelRegistry:
    def __init__(self, path: Path):
        self.path = path
        self.root = path.parent.resolve()  # the workspace: a model's files are recorded relative to it

    def entries(self) -> list[ModelEntry]:
        if not self.path.exists():
            return []
        try:
            models = checked(_Registry, json.loads(self.path.read_text(encoding="utf-8")))["models"]
            return [ModelEntry(**resolved_paths(model, PATH_FIELDS, self.root)) for model in models]
        except ValueError as exc:  # not JSON, not the shape written here
            raise RegistryError(f"{self.path}: the model registry is damaged ({exc})") from None

    def latest_approved(self) -> ModelEntry | None:
        return max((e for e in self.entries() if e.status == APPROVED), key=lambda e: e.version or 0, default=None)

    def add(self, entry: ModelEntry) -> ModelEntry:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Exclusive across threads and processes: every call opens its own descriptor, and the lock is
        # released when it is closed (or its process ends).
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = self.entries()
            if entry.status == APPROVED:
                entry.version = 1 + max((e.version or 0 for e in entries), default=0)
            entries.append(entry)
            write_record(self.path, {"models": [relative_paths(asdict(e), PATH_FIELDS, self.root) for e in entries]})
        return entry
