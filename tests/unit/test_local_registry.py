"""LocalModelRegistry: versions stay unique when several threads and processes register at once; a model's
files are found in the workspace the registry is read from."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import asdict
from pathlib import Path

import pytest

from pipeline.local_aws.registry import APPROVED, REJECTED, LocalModelRegistry, ModelEntry, RegistryError

REPO = Path(__file__).resolve().parents[2]
ADDS = 15

# Each process waits for the start signal (a file), then registers ADDS models through a new
# registry object every time, as the local pipeline does (one object per access).
REGISTRANT = """
import sys, time
from dataclasses import asdict
from pathlib import Path
from pipeline.local_aws.registry import LocalModelRegistry, ModelEntry
path, start, name, adds = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
while not start.exists():
    time.sleep(0.005)
for i in range(adds):
    LocalModelRegistry(path).add(ModelEntry(run_id=f"{name}-{i}", created="", status="Approved", validation_auc=0.9,
                                            threshold=0.8, model_artifact="", evaluation="", report=""))
"""


def entry(run_id: str, status: str = APPROVED, **files: str) -> ModelEntry:
    return ModelEntry(run_id=run_id, created="2026-12-07T00:00:00Z", status=status, validation_auc=0.9,
                      threshold=0.8, **{"model_artifact": "model.tar.gz", "evaluation": "evaluation.json",
                                        "report": "report.html", **files})


def test_approved_models_get_increasing_versions_and_rejected_ones_none(tmp_path):
    path = tmp_path / "registry.json"
    assert LocalModelRegistry(path).add(entry("a")).version == 1
    assert LocalModelRegistry(path).add(entry("b", REJECTED)).version is None
    assert LocalModelRegistry(path).add(entry("c")).version == 2
    assert [(e.run_id, e.version) for e in LocalModelRegistry(path).entries()] == [("a", 1), ("b", None), ("c", 2)]
    assert LocalModelRegistry(path).latest_approved().run_id == "c"


def test_concurrent_processes_and_threads_never_share_a_version(tmp_path):
    path, start = tmp_path / "workspace" / "registry.json", tmp_path / "start"
    env = {"PYTHONPATH": f"{REPO / 'lambda'}:{REPO}"}
    processes = [subprocess.Popen([sys.executable, "-c", REGISTRANT, str(path), str(start), f"p{n}", str(ADDS)],
                                  env=env, stderr=subprocess.PIPE, text=True) for n in range(3)]

    def in_thread(name: str) -> None:
        start_event.wait()
        for i in range(ADDS):
            LocalModelRegistry(path).add(entry(f"{name}-{i}"))

    start_event = threading.Event()
    threads = [threading.Thread(target=in_thread, args=(f"t{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    start.touch()
    start_event.set()
    for thread in threads:
        thread.join()
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr

    entries = LocalModelRegistry(path).entries()
    assert len(entries) == 5 * ADDS  # no registration lost to a concurrent rewrite
    assert sorted(e.version for e in entries) == list(range(1, 5 * ADDS + 1))
    assert not list(path.parent.glob(".registry-*"))  # no temporary file left behind


def files_of(root: Path, run_id: str) -> dict[str, str]:
    run_dir = root / "runs" / run_id
    return {"model_artifact": str(run_dir / "model.tar.gz"), "evaluation": str(run_dir / "model" / "evaluation.json"),
            "report": ""}  # a run whose script wrote no report


def test_a_runs_files_are_found_in_the_workspace_the_registry_is_read_from(tmp_path):
    """Recorded relative to the workspace: a moved (or copied) workspace names its own files, not the old ones."""
    first = tmp_path / "first"
    added = LocalModelRegistry(first / "registry.json").add(entry("a", **files_of(first, "a")))
    assert added.model_artifact == files_of(first, "a")["model_artifact"]  # the caller's entry, as given
    stored = json.loads((first / "registry.json").read_text(encoding="utf-8"))["models"][0]
    assert stored["model_artifact"] == "runs/a/model.tar.gz" and stored["report"] == ""
    moved = first.rename(tmp_path / "moved")
    (read,) = LocalModelRegistry(moved / "registry.json").entries()
    assert {name: getattr(read, name) for name in ("model_artifact", "evaluation", "report")} == files_of(moved, "a")


def test_a_registry_of_the_previous_version_keeps_its_absolute_paths(tmp_path):
    """It recorded absolute paths: read as they are, and kept so when a run registers another model."""
    elsewhere = files_of(tmp_path / "elsewhere", "a")
    path = tmp_path / "workspace" / "registry.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"models": [{**asdict(entry("a")), **elsewhere}]}), encoding="utf-8")
    LocalModelRegistry(path).add(entry("b", **files_of(path.parent, "b")))
    old, new = LocalModelRegistry(path).entries()
    assert (old.model_artifact, old.evaluation, new.model_artifact) == (
        elsewhere["model_artifact"], elsewhere["evaluation"], files_of(path.parent, "b")["model_artifact"])
    assert json.loads(path.read_text(encoding="utf-8"))["models"][0]["model_artifact"] == elsewhere["model_artifact"]


# What a hand edit or a half copy can leave: the registry is one file, so it is an error naming it, never a traceback.
DAMAGED_REGISTRIES = {
    "not JSON": "{", "a list": "[]", "models not a list": {"models": {}}, "an entry not an object": {"models": [3]},
    "an entry without its run": {"models": [{k: v for k, v in asdict(entry("a")).items() if k != "run_id"}]},
    "an AUC in words": {"models": [{**asdict(entry("a")), "validation_auc": "high"}]},
    "a version in words": {"models": [{**asdict(entry("a")), "version": "one"}]},
    "metrics as a list": {"models": [{**asdict(entry("a")), "metrics": []}]},
}


@pytest.mark.parametrize("damage", DAMAGED_REGISTRIES)
def test_a_damaged_registry_is_a_registry_error_naming_it(tmp_path, damage):
    path = tmp_path / "registry.json"
    content = DAMAGED_REGISTRIES[damage]
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    for read in (LocalModelRegistry(path).entries, LocalModelRegistry(path).latest_approved,
                 lambda: LocalModelRegistry(path).add(entry("b"))):
        with pytest.raises(RegistryError, match=f"^{path}: the model registry is damaged"):
            read()


def test_an_entry_with_a_field_this_version_does_not_know_is_read_without_it(tmp_path):
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"models": [{**asdict(entry("a")), "later_field": [1]}]}), encoding="utf-8")
    assert [e.run_id for e in LocalModelRegistry(path).entries()] == ["a"]
