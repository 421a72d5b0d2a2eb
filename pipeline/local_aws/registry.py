"""The local model registry: one JSON file listing every run's model, metrics and approval.

It mirrors a SageMaker model package group: approved models get increasing version numbers,
rejected ones are kept for the record (with the gate's reason) but get no version. Two runs
registering at once (threads or processes) never get the same version: every read-modify-write
holds an exclusive `flock` on `<registry>.lock`, and the file is replaced atomically. A model's files are
recorded relative to the workspace (the registry's folder), so a moved or copied workspace uses its own.
"""

from __future__ import annotations

import fcntl
import json
import os
import types
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from churn.model_quality import APPROVED

REJECTED = "Rejected"
PATH_FIELDS = ("model_artifact", "evaluation", "report")  # a model's files, in its run's directory


def relative_paths(record: dict[str, Any], fields: Iterable[str], root: Path) -> dict[str, Any]:
    """`record` with its `fields` (paths) relative to the workspace `root` where they are in it: what the
    workspace's files record, so that they name the workspace's own files wherever it is moved or copied."""
    def relative(path: str) -> str:
        return str(Path(path).relative_to(root)) if path and Path(path).is_relative_to(root) else path

    return {**record, **{name: relative(record[name]) for name in fields if name in record}}


def resolved_paths(record: dict[str, Any], fields: Iterable[str], root: Path) -> dict[str, Any]:
    """`record` with its relative `fields` in the workspace `root` it was read from; an absolute one (as an
    earlier version recorded them) stays as it is."""
    return {**record, **{name: str(root / record[name]) for name in fields if record.get(name)}}


def checked(kind: type, record: Any) -> dict[str, Any]:
    """The fields of `record` (JSON read back from a workspace file) that the dataclass `kind` it was written from
    has, each of its type; ValueError if it is not an object or a field is of another type (a hand edit, a half
    copy). A field `kind` does not have (an earlier version's) is left out."""
    if not isinstance(record, dict):
        raise ValueError(f"not a JSON object but {json.dumps(record)[:40]}")
    hints = get_type_hints(kind)
    known = {name: value for name, value in record.items() if name in hints}
    for name, value in known.items():
        if not _is_a(value, hint := hints[name]):
            expected = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
            raise ValueError(f"{name} is {json.dumps(value)[:40]}, not {expected}")
    return known


def _is_a(value: Any, hint: Any) -> bool:
    """Whether a JSON value is of a dataclass field's type: Any, str, int, float, X | None, list[X], dict[str, X]."""
    args = get_args(hint)
    if isinstance(hint, types.UnionType):
        return any(_is_a(value, arg) for arg in args)
    if get_origin(hint) in (list, dict):  # JSON's object keys are strings
        items = value.values() if isinstance(value, dict) else value
        return isinstance(value, get_origin(hint)) and all(_is_a(item, args[-1]) for item in items)
    return hint is Any or isinstance(value, (int, float) if hint is float else hint)


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

    models: list[dict[str, Any]]


class LocalModelRegistry:
    def __init__(self, path: Path):
        self.path = path
        self.root = path.parent.resolve()  # the workspace: a model's files are recorded relative to it

    def entries(self) -> list[ModelEntry]:
        if not self.path.exists():
            return []
        try:
            models = checked(_Registry, json.loads(self.path.read_text(encoding="utf-8"))).get("models", [])
            return [ModelEntry(**resolved_paths(checked(ModelEntry, item), PATH_FIELDS, self.root)) for item in models]
        except (ValueError, TypeError) as exc:  # not JSON, not the shape written here, an entry without a field
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
            payload = json.dumps({"models": [relative_paths(asdict(e), PATH_FIELDS, self.root)
                                             for e in entries]}, indent=2)
            # Atomic replace: a crash never leaves a half-written registry (one writer at a time: the lock).
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_text(payload, encoding="utf-8")
            os.replace(tmp, self.path)
        return entry
