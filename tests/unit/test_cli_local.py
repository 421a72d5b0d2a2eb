"""The operator CLI's local commands (`run --local`, `runs --local`, `status --local`, `models`,
`spec infer`, `predict --local`) on a small slice of the bundled data and on a small CDNOW-like log
(several feature groups), in temporary workspaces."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from churn import steps
from churn.derivations import derive_cdnow
from churn.scoring import SCORE_COLUMNS
from pipeline.errors import EXIT_INTERRUPTED
from pipeline.local_ingest import PARALLEL_INGEST_MIN_BYTES
from tests.support.feature_store import overwrite_page_headers
from tests.support.specs import UNREADABLE_SPEC_KINDS, deny_reading, unreadable_spec_file
from tests.unit.cli_support import invoke, last_json, one_error_line, summary_value

ROOT = Path(__file__).resolve().parents[2]
ROWS = 300
# Column names a user's own export might have: spaces, capitals, other words.
RENAMED = {"customerID": "Customer Ref", "tenure": "Tenure Months", "MonthlyCharges": "Monthly Charges",
           "TotalCharges": "Total Charges", "Churn": "Churned"}


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory) -> Path:
    lines = (ROOT / "data" / "churn.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    path = tmp_path_factory.mktemp("data") / "churn-small.csv"
    path.write_text("".join(lines[: ROWS + 1]), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("workspace")


@pytest.fixture(scope="module")
def first_run(small_csv, workspace) -> dict:
    """`run --local --json` as a user types it (a tiny CSV needs a lower quality bar)."""
    result = invoke("run", "--local", "--json", "--data", small_csv, "--workspace", workspace, "--threshold", "0.5")
    assert result.exit_code == 0, result.output
    return last_json(result)


def test_run_local_json_summary(first_run, workspace):
    assert first_run["status"] == "SUCCEEDED"
    assert first_run["records_ingested"] == ROWS
    assert first_run["training_rows"] == ROWS
    assert first_run["auc"] > 0.5
    assert Path(first_run["model_artifact"]).is_file()
    assert Path(first_run["run_dir"]).is_dir()
    assert Path(first_run["run_dir"]).parent == workspace / "runs"


def test_models_lists_the_run(first_run, workspace):
    result = invoke("models", "--workspace", workspace)
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if first_run["run_id"] in line)
    # the threshold as the gate compared it: rounded to 2 places, 0.7872 showed as 0.79 beside an AUC of 0.7872
    assert "Approved" in line and f"{first_run['auc']:.4f}" in line and "0.5000" in line
    listed = last_json(invoke("models", "--workspace", workspace, "--json"))["models"]
    assert [(m["run_id"], m["status"], m["version"]) for m in listed] == [(first_run["run_id"], "Approved", 1)]


def test_runs_local_and_status_local(first_run, workspace):
    listed = invoke("runs", "--local", "--workspace", workspace)
    assert listed.exit_code == 0, listed.output
    line = next(line for line in listed.stdout.splitlines() if first_run["run_id"] in line)
    assert "SUCCEEDED" in line and f"{first_run['auc']:.4f}" in line

    shown = invoke("status", first_run["run_id"], "--local", "--workspace", workspace)
    assert shown.exit_code == 0, shown.output
    for step in ("Validate input", "Ingest features", "Train model", "Register model"):
        assert f"✓ {step}" in shown.stdout
    # each step with what it reported when the run made it
    lines = {line.split("  ")[0]: line for line in shown.stdout.splitlines() if line.startswith("✓")}
    assert lines["✓ Validate input"].endswith(f"{ROWS} rows") and lines["✓ Register model"].endswith("version 1")
    assert first_run["model_artifact"] in shown.stdout

    as_json = last_json(invoke("status", first_run["run_id"], "--local", "--workspace", workspace, "--json"))
    assert as_json["auc"] == pytest.approx(first_run["auc"])
    # the top customers as the run showed them, under the record identifier's name
    assert (as_json["id_column"], as_json["top_customers"]) == ("customer_id", first_run["top_customers"])
    assert first_run["id_column"] == "customer_id" and "┃ customer_id ┃" in shown.stdout
    assert as_json["input"] == first_run["input"] != ""  # the --data it ran on
    assert summary_value(shown.stdout, "input") == first_run["input"]


def test_a_moved_or_copied_workspace_uses_its_own_model_and_shows_its_own_paths(small_csv, tmp_path):
    """The registry and run.json name a run's files relative to the workspace: a copy predicts with its own
    model (it used the original's, silently), a moved workspace still finds its model (the old path was an
    error), and `models`, `status` show paths in the workspace they read."""
    original = tmp_path / "original"
    first_run = last_json(invoke("run", "--local", "--json", "--data", small_csv, "--workspace", original,
                                 "--threshold", "0.5"))
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    moved = original.rename(tmp_path / "moved")
    for place in (copy, moved):
        predicted = invoke("predict", "--local", "--workspace", place, "--id", "7590-VHVEG", "--json")
        assert predicted.exit_code == 0, predicted.output
        assert 0 <= last_json(predicted)["churn_probability"] <= 1
        run_dir = place / "runs" / first_run["run_id"]
        (listed,) = last_json(invoke("models", "--workspace", place, "--json"))["models"]
        assert (listed["model_artifact"], listed["evaluation"]) == (str(run_dir / "model.tar.gz"),
                                                                     str(run_dir / "model" / "evaluation.json"))
        assert Path(listed["model_artifact"]).is_file() and Path(listed["evaluation"]).is_file()
        shown = last_json(invoke("status", first_run["run_id"], "--local", "--workspace", place, "--json"))
        assert (shown["run_dir"], shown["model_artifact"]) == (str(run_dir), listed["model_artifact"])
        assert shown["scores_uri"] == str(run_dir / "scores" / "scores.csv")
        assert shown["report"] == listed["report"] and shown["report"].startswith(f"{run_dir}/")
        assert shown["input"] == first_run["input"]  # the --data it ran on: not in the workspace


def test_runs_local_of_a_copied_workspace_keep_the_start_each_run_recorded(first_run, small_csv, workspace, tmp_path):
    """`cp -r` gives every file the time of the copy, in whatever order it copies them: the runs show when they
    started and are listed newest first all the same (they showed the copy's time, in the copy's order). A
    run.json of the previous version, without its start, is still dated by its time less its steps'."""
    runs = tmp_path / "runs"
    shutil.copytree(workspace, runs)
    later = last_json(invoke("run", "--local", "--json", "--data", small_csv, "--workspace", runs,
                             "--threshold", "0.5"))
    copy = tmp_path / "copy"
    shutil.copytree(runs, copy, copy_function=shutil.copy)  # as `cp -r`: the files' times are the copy's
    earlier_file = copy / "runs" / first_run["run_id"] / "run.json"
    copied_at = (copy / "runs" / later["run_id"] / "run.json").stat().st_mtime
    os.utime(earlier_file, (copied_at + 60, copied_at + 60))  # the earlier run's copied last
    listed = last_json(invoke("runs", "--local", "--max", "50", "--workspace", copy, "--json"))["runs"]
    started = {run["run_id"]: run["started"] for run in listed}
    assert (started[first_run["run_id"]], started[later["run_id"]]) == (first_run["started"], later["started"])
    order = [run["run_id"] for run in listed]
    assert order.index(later["run_id"]) < order.index(first_run["run_id"])

    previous = {k: v for k, v in json.loads(earlier_file.read_text()).items() if k != "started"}
    earlier_file.write_text(json.dumps(previous))
    os.utime(earlier_file, (copied_at, copied_at))
    listed = last_json(invoke("runs", "--local", "--max", "50", "--workspace", copy, "--json"))["runs"]
    (shown,) = [run for run in listed if run["run_id"] == first_run["run_id"]]
    estimate = datetime.fromtimestamp(copied_at - sum(previous["step_seconds"].values()), tz=UTC)
    assert shown["started"] == estimate.isoformat()


def test_tables_piped_to_another_program_are_not_cut_to_80_columns(first_run, workspace):
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    for command in (["runs", "--local"], ["models"]):
        piped = subprocess.run([sys.executable, "-m", "pipeline", *command, "--workspace", str(workspace)], cwd=ROOT,
                               env=env, capture_output=True, text=True, check=True)
        row = next(line for line in piped.stdout.splitlines() if first_run["run_id"] in line)
        assert "…" not in row and ("SUCCEEDED" in row or "Approved" in row), piped.stdout


def test_status_local_of_an_unknown_run(workspace):
    result = invoke("status", "local-nope", "--local", "--workspace", workspace)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no local run 'local-nope'")
    assert "runs --local" in result.stderr


@pytest.mark.parametrize("command", [["status", "a" * 300], ["scores", "--run", ""], ["status", "../runs"]])
def test_a_run_id_no_run_can_have_is_not_found(workspace, command):
    """Not a path, nor an OS error about a name too long for a file: no run has that name."""
    result = invoke(*command, "--local", "--workspace", workspace)
    assert result.exit_code == 1
    assert one_error_line(result).startswith(f"error: no local run {command[-1]!r} in ")


def test_predict_with_an_empty_id_is_a_bad_option(workspace):
    result = invoke("predict", "--local", "--id", " ", "--workspace", workspace, "--json")
    assert result.exit_code == 2
    assert one_error_line(result).startswith("error: --id is empty")
    assert last_json(result)["error"] == "InvalidOption"


def test_status_local_of_a_run_without_its_result_says_why(tmp_path):
    """A run writes run.json when it ends: before that (running, or its process killed) it is not unknown."""
    (tmp_path / "runs" / "local-underway").mkdir(parents=True)
    result = invoke("status", "local-underway", "--local", "--workspace", tmp_path)
    assert result.exit_code == 1
    assert (f"error: local run 'local-underway' has no readable {tmp_path / 'runs' / 'local-underway' / 'run.json'}"
            in one_error_line(result))


# What a hand edit or a half copy can leave of a run.json: a replacement, or fields of another type merged in.
DAMAGED_RUN_RECORDS = {"not JSON": "{", "a list": "[]", "a string": '"x"', "a number": "3",
                       "an AUC in words": {"auc": "high"}, "step times as a list": {"step_seconds": []},
                       "a step time in words": {"step_seconds": {"Train model": "slow"}},
                       "a version in words": {"model_version": "one"}}


@pytest.mark.parametrize("damage", DAMAGED_RUN_RECORDS)
def test_a_damaged_run_json_is_named_in_one_line_by_every_command_that_reads_it(first_run, workspace, tmp_path,
                                                                                damage):
    """runs --local lists the run saying so (its other runs as ever); status, scores (of a run without scores) and
    predict (of the approved model's run) stop with one error naming the file, exit 1."""
    copy = tmp_path / "workspace"
    shutil.copytree(workspace, copy)
    approved = max((m for m in json.loads((copy / "registry.json").read_text())["models"] if m["version"]),
                   key=lambda m: m["version"])["run_id"]
    record = copy / "runs" / approved / "run.json"
    content = DAMAGED_RUN_RECORDS[damage]
    merged = content if isinstance(content, str) else json.dumps({**json.loads(record.read_text()), **content})
    record.write_text(merged)
    (record.parent / "scores" / "scores.csv").unlink()  # scores reads run.json for a run without its scores
    for command in (f"status {approved} --local", f"scores --local --run {approved}",
                    "predict --local --id 7590-VHVEG"):
        result = invoke(*command.split(), "--workspace", copy, "--json")
        assert result.exit_code == 1, command
        assert f"error: {record}: the run's record is damaged (" in one_error_line(result), command
        assert last_json(result)["error"] == "RunRecordDamaged"
    listed = invoke("runs", "--local", "--workspace", copy, "--json")
    assert listed.exit_code == 0, listed.output
    (run,) = [run for run in last_json(listed)["runs"] if run["run_id"] == approved]
    assert run["status"] == "?" and run["error"].startswith(f"{record}: the run's record is damaged (")
    assert f"{approved}: {record}: the run's record is damaged (" in listed.output


@pytest.fixture(scope="module")
def csv_for_workers(tmp_path_factory) -> Path:
    """The bundled rows six times over, ids made unique: large enough to be ingested by worker processes."""
    header, *rows = (ROOT / "data" / "churn.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    path = tmp_path_factory.mktemp("data") / "churn-6x.csv"
    path.write_text(header + "".join(f"{copy}{row}" for copy in range(6) for row in rows), encoding="utf-8")
    assert path.stat().st_size >= PARALLEL_INGEST_MIN_BYTES
    return path


def _children(pid: int) -> int:
    """How many processes `pid` has started and not yet reaped (Linux /proc)."""
    count = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, IndexError, ValueError):
            count += int(stat.read_text().rpartition(")")[2].split()[1]) == pid
    return count


def _ctrl_c_at(step: str, processes: int, *args: object) -> tuple[int, str, str]:
    """`python -m pipeline ARGS`, and Ctrl-C as a terminal sends it (SIGINT to the whole process group) once the
    step has started its `processes`: the exit code, stdout and stderr."""
    command = [sys.executable, "-m", "pipeline", *map(str, args)]
    def as_a_terminal_leaves_sigint() -> None:  # whatever the tests inherited: a shell's background job ignores it
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True, preexec_fn=as_a_terminal_leaves_sigint) as run:
        seen = []  # the progress lines read (stderr with --json), given back in the output
        for line in run.stderr if "--json" in command else run.stdout:
            seen.append(line)
            if line.startswith(f"▶ {step}"):
                deadline = time.monotonic() + 30  # now, while the step's processes have just started
                while _children(run.pid) < processes and time.monotonic() < deadline:
                    time.sleep(0.005)
                os.killpg(run.pid, signal.SIGINT)
                break
        out, err = run.communicate(timeout=120)
    return (run.returncode, out, "".join(seen) + err) if "--json" in command else (run.returncode, "".join(seen) + out,
                                                                                   err)


@pytest.mark.parametrize("step", [steps.INGEST_FEATURES, steps.TRAIN_MODEL])
def test_ctrl_c_during_a_local_run_records_it_as_aborted_and_says_so(small_csv, csv_for_workers, tmp_path, step):
    """Ctrl-C while the step's processes (two ingest workers, or training) start: one line (no traceback from an
    ingest worker), exit 130, and run.json says ABORTED at that step."""
    data = csv_for_workers if step == steps.INGEST_FEATURES else small_csv
    code, out, err = _ctrl_c_at(step, 2 if step == steps.INGEST_FEATURES else 1, "run", "--local", "--data", data,
                                "--workspace", tmp_path, "--name", "stopped", "--threshold", "0.5", "--json")
    assert code == EXIT_INTERRUPTED, out + err
    summary = tmp_path / "runs" / "stopped" / "run.json"
    cause = f"Interrupted: stopped by Ctrl-C (SIGINT); the run is recorded as ABORTED in {summary}"
    assert "Traceback" not in err and err.splitlines()[-1] == f"error: {cause}"
    assert json.loads(out.splitlines()[-1]) == {"status": "ABORTED", "error": "Interrupted", "cause": cause}
    outcome = json.loads(summary.read_text(encoding="utf-8"))
    assert (outcome["status"], outcome["error"], list(outcome["step_seconds"])[-1]) == ("ABORTED", "Interrupted", step)
    listed = invoke("runs", "--local", "--workspace", tmp_path, "--json")
    assert [(r["run_id"], r["status"]) for r in last_json(listed)["runs"]] == [("stopped", "ABORTED")]


def test_a_run_in_progress_is_listed_at_its_step_and_one_whose_process_is_killed_is_aborted(small_csv, tmp_path):
    """`runs`/`status --local` show a run while it runs (stopped at Train model here); once its process is killed
    (SIGKILL, as the out-of-memory killer sends it) it is ABORTED, not RUNNING for ever."""
    command = [sys.executable, "-m", "pipeline", "run", "--local", "--data", small_csv, "--workspace", tmp_path,
               "--name", "going", "--threshold", "0.5"]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True) as run:
        next(line for line in run.stdout if line.startswith(f"▶ {steps.TRAIN_MODEL}"))
        os.killpg(run.pid, signal.SIGSTOP)
        try:
            listed = last_json(invoke("runs", "--local", "--workspace", tmp_path, "--json"))["runs"]
            shown = invoke("status", "going", "--local", "--workspace", tmp_path)
            scores = invoke("scores", "--local", "--run", "going", "--workspace", tmp_path)
            follower = subprocess.Popen(_follow("going", tmp_path), cwd=ROOT, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
            time.sleep(0.3)  # a poll or more while the run is stopped
        finally:
            os.killpg(run.pid, signal.SIGKILL)
    followed, follow_error = follower.communicate(timeout=60)
    assert follower.returncode == 1 and follow_error.startswith("error: Killed: its process"), followed + follow_error
    assert followed.count(f"▶ {steps.TRAIN_MODEL}") == 1
    assert [(r["run_id"], r["status"], r["running_step"]) for r in listed] == [("going", "RUNNING", steps.TRAIN_MODEL)]
    assert shown.exit_code == 0, shown.output
    assert f"▶ {steps.TRAIN_MODEL}" in shown.output and f"✓ {steps.INGEST_FEATURES}" in shown.output
    assert f"status going --local --workspace {tmp_path}" in shown.output
    assert scores.exit_code == 1
    not_yet = f"error: run 'going' has no scores yet: it is at {steps.TRAIN_MODEL}\nhint: follow it to its end"
    assert one_error_line(scores).startswith(not_yet)
    killed = invoke("status", "going", "--local", "--workspace", tmp_path, "--json")
    assert killed.exit_code == 1
    assert f"✓ {steps.BUILD_TRAINING_SET}" in killed.stderr and f"▶ {steps.TRAIN_MODEL}" in killed.stderr
    cause = f"its process ({run.pid}) ended without recording how the run ended"
    assert {key: last_json(killed)[key] for key in ("status", "error", "cause")} == {
        "status": "ABORTED", "error": "Killed", "cause": cause}


def _follow(run_id: str, workspace: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline", "status", run_id, "--local", "--workspace", str(workspace), "--follow",
            "--poll-seconds", "0.05"]


def test_status_follow_shows_a_local_run_step_by_step_to_its_end(small_csv, tmp_path):
    command = [sys.executable, "-m", "pipeline", "run", "--local", "--data", small_csv, "--workspace", tmp_path,
               "--name", "followed", "--threshold", "0.5"]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as run:
        next(line for line in run.stdout if line.startswith(f"▶ {steps.INGEST_FEATURES}"))
        follower = subprocess.run(_follow("followed", tmp_path), cwd=ROOT, capture_output=True, text=True,
                                  timeout=120)
        run.communicate(timeout=120)
    assert (run.returncode, follower.returncode) == (0, 0), follower.stdout + follower.stderr
    recorded = json.loads((tmp_path / "runs" / "followed" / "run.json").read_text(encoding="utf-8"))["step_seconds"]
    assert (list(recorded)[0], list(recorded)[-1]) == (steps.VALIDATE_INPUT, steps.RANK_SCORES)
    assert [follower.stdout.count(f"✓ {step} ") for step in recorded] == [1] * len(recorded)  # each once
    assert summary_value(follower.stdout, "status") == "SUCCEEDED"


def test_ctrl_c_during_evaluate_is_one_line_exit_130_and_a_json_line(small_csv, tmp_path):
    """As during a run: cross-validation records no run."""
    code, out, err = _ctrl_c_at("Cross-validate", 1, "evaluate", "--json", "--folds", 2, "--data", small_csv,
                                "--workspace", tmp_path)
    assert code == EXIT_INTERRUPTED, out + err
    cause = "Interrupted: stopped by Ctrl-C (SIGINT); no run was recorded"
    assert err.splitlines()[-1] == f"error: {cause}"
    assert json.loads(out.splitlines()[-1]) == {"status": "ABORTED", "error": "Interrupted", "cause": cause}


def test_a_bad_csv_exits_2_naming_file_and_line_and_writes_nothing(small_csv, tmp_path):
    lines = small_csv.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[7] = lines[7].replace(",No,", ",Nope,", 1).replace(",0,", ",zero,", 1)
    bad = tmp_path / "bad.csv"
    bad.write_text("".join(lines), encoding="utf-8")
    workspace = tmp_path / "workspace"

    result = invoke("run", "--local", "--data", bad, "--workspace", workspace)
    assert result.exit_code == 2
    assert f"error: {bad}, line 8, column" in result.stderr
    assert not (workspace / "feature-store").exists() or not any(
        p.is_file() for p in (workspace / "feature-store").rglob("*"))
    assert not (workspace / "runs").exists()

    as_json = invoke("run", "--local", "--json", "--data", bad, "--workspace", workspace)
    assert as_json.exit_code == 2
    summary = last_json(as_json)
    assert summary["status"] == "FAILED" and summary["error"] == "InputValidationError"
    assert "line 8" in summary["cause"]


@pytest.mark.parametrize("json_summary", [False, True])
def test_a_csv_that_cannot_be_read_exits_2_naming_it_and_writes_nothing(small_csv, tmp_path, monkeypatch,
                                                                         json_summary):
    data = tmp_path / "unreadable.csv"
    shutil.copyfile(small_csv, data)
    deny_reading(monkeypatch, data)
    workspace = tmp_path / "workspace"
    result = invoke("run", "--local", *(["--json"] if json_summary else []), "--data", data,
                    "--workspace", workspace)
    assert result.exit_code == 2
    expected = f"{data}: cannot be read (Permission denied)"
    if json_summary:
        assert (last_json(result)["error"], last_json(result)["cause"]) == ("InputValidationError", expected)
    else:
        assert one_error_line(result).startswith(f"error: {expected}\n")
    assert not (workspace / "runs").exists() and not (workspace / "feature-store").exists()


# Specs the check refuses, each a change to the bundled one, and what its error line says.
REFUSED_SPECS = {
    "ttl-beyond-an-expiry-time": (lambda d: d.update(online_ttl={"value": 2_147_483_647, "unit": "Weeks"}),
                                  "online_ttl: 2147483647 Weeks is more than 1,000 years"),
    **{f"record-identifier-{name}": (lambda d, name=name: d["record_identifier"].update(name=name),
                                      f"the record identifier '{name}' would be a second '{name}' column")
       for name in SCORE_COLUMNS},
    "fractional-event-time": (lambda d: d["event_time"].update(type="Fractional"),
                              "the event time 'event_time' must be String, not Fractional"),
    "feature-name-over-64": (lambda d: d["features"][0].update(name="_".join(["a"] * 64)), "at most 64 characters"),
}


@pytest.mark.parametrize("command", ["run --local", "evaluate --folds 2"])
@pytest.mark.parametrize("case", sorted(REFUSED_SPECS))
def test_a_spec_the_check_refuses_is_one_line_exit_2_and_nothing_written(small_csv, tmp_path, command, case):
    change, message = REFUSED_SPECS[case]
    spec = json.loads((ROOT / "data" / "churn.spec.json").read_text(encoding="utf-8"))
    change(spec)
    path = tmp_path / "refused.spec.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    workspace = tmp_path / "workspace"
    result = invoke(*command.split(), "--data", small_csv, "--spec", path, "--workspace", workspace)
    assert result.exit_code == 2
    assert f"error: {path}: " in one_error_line(result) and message in result.stderr
    assert not workspace.exists()


@pytest.mark.parametrize("command", ["run --local", "evaluate --folds 2"])
@pytest.mark.parametrize("kind", UNREADABLE_SPEC_KINDS)
def test_a_spec_file_that_cannot_be_read_is_one_line_exit_2_and_nothing_written(small_csv, tmp_path, command, kind):
    path = unreadable_spec_file(tmp_path, kind)
    workspace = tmp_path / "workspace"
    result = invoke(*command.split(), "--data", small_csv, "--spec", path, "--workspace", workspace)
    assert result.exit_code == 2
    assert one_error_line(result).startswith(f"error: {path}: ")
    assert not workspace.exists()

def test_runs_in_an_80_column_terminal_shows_whole_run_ids_and_errors(first_run, small_csv, workspace, tmp_path):
    """The id is what `status` takes: never cut, even with a failed run's error to show."""
    failed = tmp_path / "failed"
    shutil.copytree(workspace, failed)
    rejected = last_json(invoke("run", "--local", "--json", "--data", small_csv, "--workspace", failed,
                                "--threshold", "0.99"))
    assert rejected["status"] == "FAILED" and rejected["error"] == "ModelQualityBelowThreshold"
    listed = invoke("runs", "--local", "--workspace", failed, width=80)
    assert listed.exit_code == 0, listed.output
    assert first_run["run_id"] in listed.stdout and rejected["run_id"] in listed.stdout and "…" not in listed.stdout
    assert max(len(line) for line in listed.stdout.splitlines()) <= 80
    assert f"{rejected['run_id']}: ModelQualityBelowThreshold" in " ".join(listed.stdout.split())


def test_runs_local_in_an_empty_workspace(tmp_path):
    result = invoke("runs", "--local", "--workspace", tmp_path)
    assert result.exit_code == 1
    assert "no local runs" in result.stderr and "run --local" in result.stderr


def test_spec_infer_then_train_on_other_column_names(small_csv, workspace, first_run, tmp_path):
    # A copy of the first run's workspace: a second model registered in the shared one would be listed by
    # test_models_lists_the_run when this test runs first.
    workspace = Path(shutil.copytree(workspace, tmp_path / "workspace"))
    header, *rows = small_csv.read_text(encoding="utf-8").splitlines(keepends=True)
    renamed = tmp_path / "customers.csv"
    columns = [RENAMED.get(c, c) for c in header.strip().split(",")]
    renamed.write_text(",".join(columns) + "\n" + "".join(rows), encoding="utf-8")
    spec = tmp_path / "customers.spec.json"

    inferred = invoke("spec", "infer", renamed, "--id", "Customer Ref", "--label", "Churned", "--out", spec)
    assert inferred.exit_code == 0, inferred.output
    written = json.loads(spec.read_text())
    assert written["record_identifier"]["source"] == "Customer Ref"
    assert written["label"]["source"] == "Churned"
    assert f"run --local --data {renamed} --spec {spec}" in inferred.stdout

    args = ("run", "--local", "--data", renamed, "--spec", spec, "--workspace", workspace, "--threshold", "0.5",
            "--name", "renamed-columns")
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    summary = last_json(result)
    assert summary["status"] == "SUCCEEDED" and summary["training_rows"] == ROWS
    assert summary["run_id"] == "renamed-columns"
    again = invoke(*args)  # a run's name is never reused: its directory holds a registered model
    assert again.exit_code == 2 and "already exists" in again.stderr
    assert summary["feature_groups"] != first_run["feature_groups"]  # another schema, another group

    models = invoke("models", "--workspace", workspace)
    assert first_run["run_id"] in models.stdout and summary["run_id"] in models.stdout


def test_spec_infer_on_a_folder_or_into_a_missing_folder_is_one_error(small_csv, tmp_path):
    folder = invoke("spec", "infer", tmp_path, "--id", "customerID", "--label", "Churn")
    assert folder.exit_code == 2
    assert one_error_line(folder).startswith(f"error: {tmp_path}: cannot be read")
    target = tmp_path / "missing" / "my.spec.json"
    nowhere = invoke("spec", "infer", small_csv, "--id", "customerID", "--label", "Churn", "--out", target)
    assert nowhere.exit_code == 2
    assert one_error_line(nowhere).startswith(f"error: --out {target}: cannot be written")


def test_spec_infer_on_a_malformed_csv_is_one_located_error(small_csv, tmp_path):
    """A field over the CSV reader's size limit: run --local's error, not a traceback."""
    lines = small_csv.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[11] = lines[11].replace(",", "," + "x" * 131073, 1)
    data = tmp_path / "huge.csv"
    data.write_text("".join(lines), encoding="utf-8")
    inferred = invoke("spec", "infer", data, "--id", "customerID", "--label", "Churn")
    assert inferred.exit_code == 2
    assert one_error_line(inferred).startswith(
        f"error: {data}, line 12: malformed CSV (field larger than field limit (131072): a quote opened in this row "
        "is never closed, or a value is that long)")
    assert not data.with_suffix(".spec.json").exists()


@pytest.mark.parametrize(("broken", "error"), [
    (lambda line: "\n" + line, "line 9: a blank line inside the data (blank lines may only end the file)"),
    (lambda line: ",".join([line.split(",")[0], '"two\nlines"', *line.split(",")[2:]]),
     "line 9, column 'gender': the value holds a line break (value 'two\\nlines')"),
    (lambda line: ",".join([line.split(",")[0], '"two\rlines"', *line.split(",")[2:]]),
     "line 9, column 'gender': the value holds a line break (value 'two\\rlines')"),
    (lambda line: line.replace(",", ",\x00", 1), "line 9, column 'gender': the value holds a NUL character"),
])
def test_spec_infer_refuses_a_file_run_refuses_with_runs_error(small_csv, tmp_path, broken, error):
    """A spec written for a file the run then refuses would be a promise broken at Validate input."""
    lines = small_csv.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[8] = broken(lines[8])
    data = tmp_path / "broken.csv"
    data.write_text("".join(lines), encoding="utf-8")
    inferred = invoke("spec", "infer", data, "--id", "customerID", "--label", "Churn")
    assert inferred.exit_code == 2
    assert one_error_line(inferred).startswith(f"error: {data}, {error}")
    assert not data.with_suffix(".spec.json").exists()


def test_spec_infer_on_a_csv_without_feature_columns_says_so(tmp_path):
    data = tmp_path / "ids-and-labels.csv"
    data.write_text("customer,churned,notes\nA1,Yes,\nA2,No,\n", encoding="utf-8")
    inferred = invoke("spec", "infer", data, "--id", "customer", "--label", "churned")
    assert inferred.exit_code == 2
    assert one_error_line(inferred).startswith(f"error: {data}: no feature column: every column but the id "
                                               "'customer' and the label 'churned' is missing or empty")
    assert not data.with_suffix(".spec.json").exists()


def test_spec_infer_makes_whole_numbers_beyond_64_bits_fractional_and_says_so(tmp_path):
    data = tmp_path / "accounts.csv"
    data.write_text("id,balance,churned\nA1,99999999999999999999,Yes\nA2,5,No\nA3,7,No\n", encoding="utf-8")
    spec = tmp_path / "accounts.spec.json"
    inferred = invoke("spec", "infer", data, "--id", "id", "--label", "churned", "--out", spec)
    assert inferred.exit_code == 0, inferred.output
    assert "column 'balance' holds '99999999999999999999', a whole number beyond 64 bits" in " ".join(
        inferred.stdout.split())
    (balance,) = json.loads(spec.read_text(encoding="utf-8"))["features"]
    assert balance["type"] == "Fractional"  # an Integral feature refuses it at Validate input
    run = invoke("run", "--local", "--data", data, "--spec", spec, "--workspace", tmp_path / "ws")
    assert "fits in 64 bits" not in run.output


def test_spec_infer_warns_of_values_ingest_refuses_in_a_number_column(small_csv, tmp_path):
    lines = small_csv.read_text(encoding="utf-8").splitlines(keepends=True)
    column = lines[0].strip().split(",").index("TotalCharges")
    fields = lines[5].rstrip("\n").split(",")
    fields[column] = "nan"  # float() reads it; ingest refuses it in a Fractional feature
    lines[5] = ",".join(fields) + "\n"
    data = tmp_path / "with-nan.csv"
    data.write_text("".join(lines), encoding="utf-8")
    spec = tmp_path / "with-nan.spec.json"
    inferred = invoke("spec", "infer", data, "--id", "customerID", "--label", "Churn", "--out", spec)
    assert inferred.exit_code == 0, inferred.output
    assert "column 'TotalCharges' holds 'nan', not a finite number" in " ".join(inferred.stdout.split())
    total = next(f for f in json.loads(spec.read_text(encoding="utf-8"))["features"] if f["source"] == "TotalCharges")
    assert total["type"] == "Fractional"


@pytest.mark.parametrize(("options", "error"), [
    (("--id", "Churn", "--label", "Churn"), "error: --id and --label both name the column 'Churn': "),
    (("--id", "", "--label", "Churn"), "error: --id must name a column"),
])
def test_spec_infer_with_options_naming_no_or_one_column_for_two_says_so(small_csv, tmp_path, options, error):
    spec = tmp_path / "my.spec.json"
    inferred = invoke("spec", "infer", small_csv, *options, "--out", spec)
    assert inferred.exit_code == 2
    assert one_error_line(inferred).startswith(error)
    assert not spec.exists()


def test_spec_infer_never_writes_over_its_input(small_csv, tmp_path):
    data = tmp_path / "customers.csv"
    data.write_bytes(small_csv.read_bytes())
    (tmp_path / "elsewhere").mkdir()
    for out in (data, tmp_path / "elsewhere" / ".." / "customers.csv"):
        inferred = invoke("spec", "infer", data, "--id", "customerID", "--label", "Churn", "--out", out, "--force")
        assert inferred.exit_code == 2
        assert one_error_line(inferred).startswith(f"error: --out {out} is the input CSV")
        assert data.read_bytes() == small_csv.read_bytes()


def test_spec_infer_keeps_an_existing_spec_unless_forced(small_csv, tmp_path):
    spec = tmp_path / "my.spec.json"
    spec.write_text("{\"description\": \"reviewed by hand\"}", encoding="utf-8")
    again = invoke("spec", "infer", small_csv, "--id", "customerID", "--label", "Churn", "--out", spec)
    assert again.exit_code == 2
    assert one_error_line(again).startswith(f"error: --out {spec} already exists")
    assert "--force" in again.stderr
    assert "reviewed by hand" in spec.read_text(encoding="utf-8")
    forced = invoke("spec", "infer", small_csv, "--id", "customerID", "--label", "Churn", "--out", spec, "--force")
    assert forced.exit_code == 0, forced.output
    assert json.loads(spec.read_text(encoding="utf-8"))["record_identifier"]["source"] == "customerID"


def test_spec_infer_shows_column_names_that_look_like_markup_as_they_are(tmp_path):
    data = tmp_path / "prices.csv"
    data.write_text("id,price [red],a[/b],churn\nA1,2,3,Yes\nA2,3,,No\n", encoding="utf-8")
    inferred = invoke("spec", "infer", data, "--id", "id", "--label", "churn")
    assert inferred.exit_code == 0, inferred.output
    assert "price [red]" in inferred.stdout
    assert "column 'a[/b]' is blank in 1 rows" in inferred.stdout


def test_spec_infer_lines_stay_whole_when_piped(small_csv, tmp_path):
    """Piped, rich's console is 80 columns wide: the warnings and the next command must not be cut into lines
    (and a path with a space is quoted, so the command runs as pasted)."""
    data = tmp_path / "a folder name long enough to need wrapping" / "customers.csv"
    data.parent.mkdir()
    data.write_text("id,Total Charges Including Every Discount Ever Applied,churn\nA1,1,Yes\nA2,,No\n",
                    encoding="utf-8")
    inferred = invoke("spec", "infer", data, "--id", "id", "--label", "churn", width=80)
    assert inferred.exit_code == 0, inferred.output
    lines = inferred.stdout.splitlines()
    spec = data.with_suffix(".spec.json")
    assert f"next: python -m pipeline run --local --data '{data}' --spec '{spec}'" in lines
    assert f"wrote {spec}" in lines
    column = "Total Charges Including Every Discount Ever Applied"
    assert f"! column '{column}' is blank in 1 rows: stored as missing" in lines


def test_local_run_rejects_aws_only_options(small_csv, tmp_path):
    result = invoke("run", "--local", "--data-key", "raw/churn.csv", "--workspace", tmp_path)
    assert result.exit_code == 2
    assert "--data-key is only used on AWS" in result.stderr


@pytest.mark.parametrize(("command", "option"), [
    ("status some-run --local --region eu-west-1", "--region"), ("runs --local --region eu-west-1", "--region"),
    ("scores --local --stack-name other", "--stack-name"), ("predict --local --id 1 --region eu-west-1", "--region"),
])
def test_local_commands_reject_aws_only_options(tmp_path, command, option):
    result = invoke(*command.split(), "--workspace", tmp_path)
    assert result.exit_code == 2
    assert one_error_line(result).startswith(f"error: {option} is only used on AWS")


@pytest.mark.parametrize(("command", "error", "message"), [
    ("scores --local --top 0", "UsageError", "Invalid value for '--top'"),
    ("predict --local --id 1 --features abc", "UsageError", "Invalid value for '--features'"),
    ("evaluate --folds 1", "UsageError", "Invalid value for '--folds'"),
    ("runs --local --bogus", "UsageError", "No such option: --bogus"),
    ("run --local --knowledge-cutoff nope", "InvalidOption", "--knowledge-cutoff: knowledge_cutoff 'nope'"),
    ("run --local --data-key raw/x.csv", "InvalidOption", "--data-key is only used on AWS"),
])
def test_a_bad_option_is_one_line_exit_2_and_a_json_line(tmp_path, command, error, message):
    """Whether the command line's parser or the command refuses it: `error:` and a hint, never a box."""
    result = invoke(*command.split(), "--workspace", tmp_path, "--json")
    assert result.exit_code == 2
    assert one_error_line(result).startswith(f"error: {message}")
    assert (last_json(result)["status"], last_json(result)["error"]) == ("FAILED", error)
    assert message in last_json(result)["cause"]


@pytest.mark.parametrize("threshold", ["0.3", "1.2", "-1"])
def test_a_threshold_the_stack_would_refuse_is_refused_before_anything_runs(small_csv, tmp_path, threshold):
    workspace = tmp_path / "workspace"
    result = invoke("run", "--local", "--data", small_csv, "--workspace", workspace, "--threshold", threshold)
    assert result.exit_code == 2
    message = one_error_line(result)
    assert f"--threshold: quality_threshold must be between 0.5 and 1.0, got {float(threshold)}" in message
    assert not workspace.exists()


def test_a_missing_input_is_one_line(tmp_path):
    result = invoke("run", "--local", "--data", tmp_path / "nothing.csv", "--workspace", tmp_path)
    assert result.exit_code == 2
    assert "is not a file" in one_error_line(result)


def test_a_workspace_the_run_cannot_write_is_one_error_naming_the_path(small_csv, tmp_path):
    """The machine's errors (a full disk, a path that is not a folder) are one line too, not a traceback."""
    (tmp_path / "workspace").mkdir()
    (tmp_path / "workspace" / "runs").write_text("")  # a file where the runs folder goes
    result = invoke("run", "--local", "--data", small_csv, "--workspace", tmp_path / "workspace")
    assert result.exit_code == 1
    assert "Not a directory" in one_error_line(result) and str(tmp_path / "workspace" / "runs") in result.stderr


@pytest.mark.parametrize("command", ["models", "runs --local", "scores --local", "predict --local --id 7590-VHVEG",
                                     "run --local --threshold 0.5", "evaluate"])
def test_a_workspace_that_is_a_file_is_a_bad_option(small_csv, tmp_path, command):
    """Not 'no models registered yet' (models, runs, scores, predict said so) nor a failed run (run, evaluate)."""
    workspace = tmp_path / "notes.txt"
    workspace.write_text("not a workspace")
    data = ["--data", small_csv] if command.startswith("run ") else []
    result = invoke(*command.split(), "--workspace", workspace, *data)
    assert result.exit_code == 2
    assert one_error_line(result).startswith(f"error: --workspace {workspace} is not a folder")


@pytest.mark.parametrize("command", ["models", "runs --local", "scores --local", "predict --local --id 7590-VHVEG",
                                     "run --local --threshold 0.5", "evaluate"])
@pytest.mark.parametrize("layout", ["under a file", "its feature store a file"])
def test_a_workspace_under_a_file_or_whose_feature_store_is_a_file_is_a_bad_option(small_csv, tmp_path, command,
                                                                                   layout):
    """Not an OS error (NotADirectoryError, FileExistsError) nor 'no models registered yet': the path and what
    is wrong with it, exit 2, and nothing written."""
    (tmp_path / "notes.txt").write_text("not a folder")
    if layout == "under a file":
        workspace, wrong = tmp_path / "notes.txt" / "workspace", tmp_path / "notes.txt"
    else:
        workspace, wrong = tmp_path / "workspace", tmp_path / "workspace" / "feature-store"
        workspace.mkdir()
        wrong.write_text("not a folder")
    data = ["--data", small_csv] if command.startswith(("run ", "evaluate")) else []
    result = invoke(*command.split(), "--workspace", workspace, *data, "--json")
    assert result.exit_code == 2
    *_, error, hint = result.stderr.splitlines()
    assert error.startswith(f"error: --workspace {workspace}") and error.endswith(f"{wrong} is not a folder")
    assert hint.startswith("hint: ")
    assert last_json(result)["error"] == "InvalidWorkspace"
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(["notes.txt", *(["workspace", "feature-store"]
                                                                                 if wrong.name != "notes.txt" else [])])


@pytest.mark.parametrize(("command", "content"), [
    *((command, content) for command in ("models", "predict --local --id 7590-VHVEG", "scores --local")
      for content in ("{", "[]", '{"models": [{"run_id": "a", "validation_auc": "high"}]}')),
    ("run --local --threshold 0.5", "{")])
def test_a_damaged_model_registry_is_one_error_naming_it(small_csv, tmp_path, command, content):
    """Cut off, edited by hand or not the registry this project writes."""
    registry = tmp_path / "workspace" / "registry.json"
    registry.parent.mkdir()
    registry.write_text(content, encoding="utf-8")
    args = [*command.split(), *(["--data", small_csv] if command.startswith("run") else [])]
    result = invoke(*args, "--workspace", tmp_path / "workspace")
    assert result.exit_code == 1
    assert f"{registry}: the model registry is damaged (" in one_error_line(result)
    if command.startswith("run"):  # the run is on record as failed, at the step that met the registry
        (outcome,) = [json.loads(path.read_text()) for path in (tmp_path / "workspace" / "runs").glob("*/run.json")]
        assert (outcome["status"], outcome["error"]) == ("FAILED", "RegistryError")
        assert list(outcome["step_seconds"])[-1] == "Register model"


def test_a_store_in_an_older_layout_is_one_error_and_the_run_writes_nothing(small_csv, tmp_path):
    old_store = tmp_path / "workspace" / "feature-store"
    (old_store / "online").mkdir(parents=True)  # an older version's layout: no FORMAT file
    result = invoke("run", "--local", "--data", small_csv, "--workspace", tmp_path / "workspace")
    assert result.exit_code == 1
    assert "holds a local feature store written by an older version" in one_error_line(result)
    assert "hint:" in result.stderr
    assert not (tmp_path / "workspace" / "runs").exists()


def _damage(workspace: Path, store: str) -> Path:
    """Garbage in place of the online store's SQLite file, of an offline store's Parquet file or of a feature
    group's description, or a folder in place of the SQLite file; or the SQLite file's pages past its header, or an
    offline Parquet file's first data page, overwritten (DuckDB names no file then: the group's offline store is)."""
    damaged = workspace / "feature-store" / "online-store.sqlite"
    if store == "description":
        damaged = next((workspace / "feature-store" / "feature-groups").glob("*.json"))
    elif store.startswith("offline"):
        damaged = next((workspace / "feature-store" / "offline-store").rglob("*.parquet"))
    if store == "online folder":
        damaged.unlink()
        damaged.mkdir()
    elif store == "online page":
        overwrite_page_headers(damaged)
    elif store == "offline page":
        offset = pq.ParquetFile(damaged).metadata.row_group(0).column(0).data_page_offset
        with open(damaged, "r+b") as file:
            file.seek(offset)
            file.write(b"\xff" * 16)
        return damaged.parents[4]  # year=/month=/day=/hour= below the group's data folder
    else:
        damaged.write_text("garbage\n")
    return damaged


@pytest.mark.parametrize(("command", "store"), [
    ("predict --local --id 7590-VHVEG", "online"), ("predict --local --id 7590-VHVEG", "online folder"),
    ("predict --local --id 7590-VHVEG", "description"), ("run --local --threshold 0.5", "description"),
    ("run --local --threshold 0.5", "online"),
    ("run --local --threshold 0.5", "offline"), ("run --local --threshold 0.5", "offline page"),
    ("predict --local --id 7590-VHVEG", "online page"), ("run --local --threshold 0.5", "online page")])
def test_a_damaged_feature_store_is_one_error_naming_the_file(first_run, small_csv, workspace, tmp_path, command,
                                                              store):
    copy = tmp_path / "workspace"
    shutil.copytree(workspace, copy)
    damaged = _damage(copy, store)
    args = [*command.split(), *([] if command.startswith("predict") else ["--data", small_csv])]
    result = invoke(*args, "--workspace", copy, "--json")
    assert result.exit_code == 1
    *_, error, hint = result.stderr.splitlines()  # after the steps (on stderr with --json)
    assert error.startswith("error: ") and str(damaged) in error and hint.startswith("hint: ")
    assert "--workspace" in hint
    assert (last_json(result)["status"], last_json(result)["error"]) == ("FAILED", "StoreDamagedError")
    if command.startswith("run"):  # on record as failed at the step that met it; an unreadable SQLite file first
        recorded = [json.loads(path.read_text()) for path in (copy / "runs").glob("*/run.json")
                    if path.parent.name != first_run["run_id"] and not path.parent.name.startswith("cv-")]
        if store == "online":  # refused when the store is opened, before the run writes
            assert recorded == [] and "✗" not in result.stderr
        else:
            (outcome,) = recorded
            step = {"description": steps.INGEST_FEATURES, "online page": steps.INGEST_FEATURES,
                    "offline": steps.WAIT_FOR_OFFLINE_STORE}.get(
                store, steps.BUILD_TRAINING_SET)  # the count reads no data page: the training set is the first
            assert (outcome["status"], outcome["error"]) == ("FAILED", "StoreDamagedError")
            assert list(outcome["step_seconds"])[-1] == step
            assert f"✗ {step}" in result.stderr


def test_evaluate_cross_validates_with_the_same_script(small_csv, workspace):
    result = invoke("evaluate", "--folds", "3", "--json", "--data", small_csv, "--workspace", workspace)
    assert result.exit_code == 0, result.output
    cv = last_json(result)
    assert len(cv["aucs"]) == 3
    assert cv["auc_mean"] == pytest.approx(sum(cv["aucs"]) / 3)
    assert 0.5 < cv["auc_mean"] <= 1.0 and cv["auc_std"] >= 0
    assert "over 3 folds" in result.stderr
    assert cv["folding"] == {"kind": "stratified", "id_column": "customer_id"}
    assert summary_value(result.stderr, "folds") == "stratified by customer_id (each id's rows in one fold)"
    # cross-validation registers nothing
    registry = json.loads((workspace / "registry.json").read_text()) if (workspace / "registry.json").exists() else {}
    assert not any(m["run_id"] == Path(cv["run_dir"]).name for m in registry.get("models", []))


def test_evaluate_leaves_the_workspace_feature_store_alone(first_run, workspace, small_csv, tmp_path):
    """It ingested into the workspace's store with the time of now: the evaluated file became every customer's
    latest version, which predict then served, and its folds took in every record of earlier runs."""
    store = workspace / "feature-store"
    before = sorted((p.relative_to(store), p.stat().st_size) for p in store.rglob("*") if p.is_file())
    part = tmp_path / "part.csv"
    part.write_text("".join(small_csv.read_text(encoding="utf-8").splitlines(keepends=True)[:201]), encoding="utf-8")
    result = invoke("evaluate", "--folds", "2", "--json", "--data", part, "--workspace", workspace)
    assert result.exit_code == 0, result.output
    cv = last_json(result)
    assert sum(fold["test_rows"] for fold in cv["fold_results"]) == 200  # the file's rows, not the store's 300
    assert sorted((p.relative_to(store), p.stat().st_size) for p in store.rglob("*") if p.is_file()) == before
    assert not (Path(cv["run_dir"]) / "feature-store").exists()  # its own store is gone with the evaluation
    status = invoke("status", Path(cv["run_dir"]).name, "--local", "--workspace", workspace)  # as evaluate names it
    assert status.exit_code == 2  # it said the run was still validating, or had been killed
    assert one_error_line(status).startswith(f"error: {Path(cv['run_dir']).name!r} is a cross-validation by "
                                             f"`evaluate`, not a run: its results are in {cv['run_dir']}\n")


# -- several feature groups ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def groups_workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("groups")


@pytest.fixture(scope="module")
def derived_run(cdnow_log, groups_workspace) -> tuple[dict, str]:
    """`run --local --spec data/cdnow.spec.json --data <purchase log>`: a derivation, three groups."""
    result = invoke("run", "--local", "--spec", ROOT / "data" / "cdnow.spec.json", "--data", cdnow_log,
                    "--workspace", groups_workspace, "--threshold", "0.5", "--json")
    assert result.exit_code == 0, result.output
    return last_json(result), result.stderr


def test_evaluate_on_an_out_of_time_spec_folds_by_time(cdnow_log, groups_workspace):
    """Rolling origin over the latest periods: each fold validates one, trained on the earlier ones whose
    labels settled before it (CDNOW: 90 days after each bimonthly observation, so the period just before is
    left out). Six periods, the first with nothing before it and the second with nothing settled: 4 folds
    at most, and more are a refused option."""
    cdnow = ("--spec", ROOT / "data" / "cdnow.spec.json", "--data", cdnow_log, "--workspace", groups_workspace)
    result = invoke("evaluate", "--folds", "2", "--json", *cdnow)
    assert result.exit_code == 0, result.output
    cv = last_json(result)
    assert cv["folding"] == {"kind": "rolling_origin", "time_column": "observation_time", "label_horizon_days": 90}
    folds = [(fold["validation_periods"]["first"][:10], fold["train_periods"]["first"][:10],
              fold["train_periods"]["last"][:10], fold["unsettled_periods"]["first"][:10])
             for fold in cv["fold_results"]]
    assert folds == [("1997-12-15", "1997-04-15", "1997-08-15", "1997-10-15"),
                     ("1998-02-15", "1997-04-15", "1997-10-15", "1997-12-15")]
    assert summary_value(result.stderr, "folds").startswith("by time on observation_time (rolling origin)")
    assert result.stderr.startswith(f"Local cross-validation on {cdnow_log} (feature groups local-profile-")
    done = [line for line in result.stderr.splitlines() if line.startswith("✓ ")]
    assert len({re.search(r"\d\.\ds  ", line).end() for line in done}) == 1  # the seconds line up, groups' steps too
    second = cv["fold_results"][1]
    assert summary_value(result.stderr, "fold 2") == (
        f"{second['auc']:.4f}  validated on {second['validation_periods']['first']} ({second['test_rows']} rows); "
        f"trained on {second['train_periods']['first']} … {second['train_periods']['last']} (4 periods); "
        f"left out {second['unsettled_periods']['first']} (1 period), unsettled")
    refused = invoke("evaluate", "--folds", "5", "--json", *cdnow)
    assert refused.exit_code == 2
    assert last_json(refused)["error"] == "FoldsRefused"
    assert refused.stderr.strip().splitlines()[-2:] == [
        "error: --folds 5: cv_folds=5: rolling-origin folds validate the latest 5 periods of 'observation_time', "
        "one each, and no period before 1997-06-15T00:00:00.000Z has its labels settled by then "
        "(label_horizon_days=90), so at most 4 folds", "hint: pass fewer --folds"]


@pytest.mark.parametrize("command", ["run --local", "evaluate --folds 2"])
def test_a_derivation_input_that_is_not_utf8_is_one_error_naming_its_line(cdnow_log, tmp_path, command):
    lines = cdnow_log.read_bytes().splitlines(keepends=True)
    bad = tmp_path / "purchases.txt"
    bad.write_bytes(b"".join(lines[:4]) + lines[4].replace(b".", b"\xff", 1) + b"".join(lines[5:]))
    result = invoke(*command.split(), "--spec", ROOT / "data" / "cdnow.spec.json", "--data", bad,
                    "--workspace", tmp_path / "workspace")
    assert result.exit_code == 2
    assert f"error: {bad}, line 5: not UTF-8 text (byte 0xff" in one_error_line(result)
    assert not (tmp_path / "workspace").exists()


@pytest.mark.parametrize("command", ["run --local", "evaluate --folds 2"])
def test_a_derivation_input_that_cannot_be_read_is_one_error_naming_it(cdnow_log, tmp_path, monkeypatch, command):
    data = tmp_path / "purchases.txt"
    shutil.copyfile(cdnow_log, data)
    deny_reading(monkeypatch, data)
    result = invoke(*command.split(), "--spec", ROOT / "data" / "cdnow.spec.json", "--data", data,
                    "--workspace", tmp_path / "workspace")
    assert result.exit_code == 2
    assert one_error_line(result).startswith(f"error: {data}: cannot be read (Permission denied)\n")
    assert not (tmp_path / "workspace").exists()


def test_a_derived_run_names_every_feature_group_and_the_out_of_time_split(derived_run, cdnow_spec):
    summary, shown = derived_run
    assert summary["status"] == "SUCCEEDED"
    assert set(summary["feature_groups"]) == {"profile", "activity", "labels"}
    for name in summary["feature_groups"].values():
        assert name in summary_value(shown, "feature groups")
    for group in ("profile", "activity", "labels"):
        assert f"✓ Validate input ({group})" in shown and f"✓ Ingest features ({group})" in shown
    split = summary["split"]
    assert split["kind"] == "out_of_time" and split["validation_periods"]["first"].startswith("1998-02-15")
    # December's labels (no purchase until March 15) are settled only after February 15: not trained on
    assert split["train_periods"]["last"].startswith("1997-10-15")
    assert split["unsettled_periods"]["first"].startswith("1997-12-15") and split["label_horizon_days"] == 90
    assert summary_value(shown, "validation split") == (
        f"out of time on observation_time: trained on {split['train_periods']['first']} … "
        f"{split['train_periods']['last']} ({split['train_periods']['count']} periods), validated on "
        f"{split['validation_periods']['first']} (1 period); left out {split['unsettled_periods']['first']} "
        "(1 period): its labels settle 90 days after observation, after the validation starts")


def test_predict_merges_every_online_groups_record(derived_run, groups_workspace):
    summary, _ = derived_run
    result = invoke("predict", "--local", "--workspace", groups_workspace, "--id", " 00001 ", "--features", "50",
                    "--json")
    assert result.exit_code == 0, result.output
    shown = last_json(result)
    assert shown["record_id"] == "00001"  # as the records hold it (ingest strips ids), not as typed
    groups = summary["feature_groups"]
    assert shown["feature_groups"] == [groups["profile"], groups["activity"]]  # the labels group is offline only
    features = {c["feature"] for c in shown["up"] + shown["down"]}
    assert "first_purchase_month" in features or "first_purchase_cds" in features  # from profile
    assert "recency_days" in features  # from activity


def test_a_knowledge_cutoff_keeps_later_writes_out_of_the_training_set(derived_run, groups_workspace, cdnow_log):
    result = invoke("run", "--local", "--spec", ROOT / "data" / "cdnow.spec.json", "--data", cdnow_log,
                    "--workspace", groups_workspace, "--threshold", "0.5", "--knowledge-cutoff",
                    "2001-01-01 00:00:00.000")
    assert result.exit_code == 1  # nothing was written by then
    assert "EmptyTrainingSet" in result.stderr and "and knowledge cutoff 2001-01-01 00:00:00.000" in result.stderr
    assert invoke("run", "--local", "--knowledge-cutoff", "yesterday").exit_code == 2


def test_several_groups_without_a_derivation_read_a_folder_of_group_files(cdnow_log, tmp_path):
    folder = tmp_path / "sources"
    folder.mkdir()
    for group, text in derive_cdnow(cdnow_log.read_text().splitlines(), str(cdnow_log)).items():
        (folder / f"{group}.csv").write_text(text, encoding="utf-8")
    spec = json.loads((ROOT / "data" / "cdnow.spec.json").read_text())
    del spec["derive"]
    spec_path = tmp_path / "groups.spec.json"
    spec_path.write_text(json.dumps(spec))
    args = ("run", "--local", "--spec", spec_path, "--workspace", tmp_path / "ws", "--threshold", "0.5")
    result = invoke(*args, "--data", folder, "--json")
    assert result.exit_code == 0, result.output
    assert last_json(result)["training_rows"] > 0
    not_a_folder = invoke(*args, "--data", folder / "profile.csv")
    assert not_a_folder.exit_code == 2
    assert "is not a folder" in one_error_line(not_a_folder) and "profile.csv, activity.csv, labels.csv" in \
        not_a_folder.stderr
    assert invoke(*args).exit_code == 2  # --data is needed with another spec
    (folder / "activity.csv").unlink()
    incomplete = invoke(*args, "--data", folder)
    assert incomplete.exit_code == 2
    assert f"--data {folder} has no activity.csv" in one_error_line(incomplete)


def test_evaluate_with_room_for_one_fold_says_more_data_is_needed(cdnow_log, tmp_path):
    """Two observation periods give one rolling-origin fold; --folds takes 2 or more, so the hint was an impossible
    'pass fewer --folds'."""
    folder = tmp_path / "sources"
    folder.mkdir()
    for group, text in derive_cdnow(cdnow_log.read_text().splitlines(), str(cdnow_log)).items():
        header, *rows = text.splitlines(keepends=True)
        if group == "labels":  # the latest two observation periods only
            column = header.rstrip("\n").split(",").index("observation_time")
            latest = sorted({row.split(",")[column] for row in rows})[-2:]
            rows = [row for row in rows if row.split(",")[column] in latest]
        (folder / f"{group}.csv").write_text(header + "".join(rows), encoding="utf-8")
    spec = json.loads((ROOT / "data" / "cdnow.spec.json").read_text())
    del spec["derive"]
    spec_path = tmp_path / "groups.spec.json"
    spec_path.write_text(json.dumps(spec))
    result = invoke("evaluate", "--folds", "2", "--spec", spec_path, "--data", folder, "--workspace", tmp_path / "ws")
    assert result.exit_code == 2
    *_, error, hint = result.stderr.strip().splitlines()
    assert error.endswith("so at most 1 fold")
    assert hint == ("hint: cross-validation needs 2 folds or more: give it more data (more observation periods, "
                    "or more rows of each label)")


def test_hyperparameters_reach_the_training_script_of_a_local_run_and_of_evaluate(small_csv, tmp_path):
    workspace = tmp_path / "workspace"
    result = invoke("run", "--local", "--json", "--data", small_csv, "--workspace", workspace, "--threshold", "0.5",
                    "--hyperparameters", '{"max_depth": 2, "max_cat_to_onehot": 1, "max_deep": 4}')
    assert result.exit_code == 0, result.output
    assert "! [train_model] WARNING: ignoring unknown hyperparameter(s): max_deep" in result.stderr  # not silent
    evaluation = json.loads((Path(last_json(result)["run_dir"]) / "model" / "evaluation.json").read_text())
    assert (evaluation["hyperparameters"]["max_depth"], evaluation["hyperparameters"]["max_cat_to_onehot"]) == (2, 1)
    assert not any(feature.get("one_hot") for feature in evaluation["features"])
    cv = invoke("evaluate", "--folds", "2", "--json", "--data", small_csv, "--workspace", workspace,
                "--hyperparameters", '{"num_round": 3}')
    assert cv.exit_code == 0, cv.output
    assert all(fold["best_iteration"] <= 2 for fold in last_json(cv)["fold_results"])


@pytest.mark.parametrize("value", ["{max_depth: 2}", "[1, 2]", '"deep"'])
def test_hyperparameters_that_are_not_a_json_object_are_refused_before_anything_runs(small_csv, tmp_path, value):
    workspace = tmp_path / "workspace"
    for command in ("run --local", "evaluate --folds 2"):
        result = invoke(*command.split(), "--data", small_csv, "--workspace", workspace, "--hyperparameters", value)
        assert result.exit_code == 2
        assert f"--hyperparameters: {value!r} is not a JSON object" in one_error_line(result)
        assert not workspace.exists()


@pytest.mark.parametrize(("value", "expected"), [
    ('{"max_depth": "abc"}', "hyperparameter max_depth='abc': not of type int"),
    ('{"eta": 5}', "hyperparameter eta=5.0: learning rate, in (0, 1]"),
    ('{"num_round": 0}', "hyperparameter num_round=0: maximum number of boosting rounds, at least 1"),
    # the spec's columns: an override was dropped without a word
    ('{"exclude_columns": "gender", "max_depth": 3}', "hyperparameter exclude_columns: set by the feature spec "
     f"{ROOT / 'data' / 'churn.spec.json'} (change it there)"),
    # one group's split is the spec's too (random): this made an out-of-time split on tenure
    ('{"time_column": "tenure", "validation_split": "out_of_time"}', "hyperparameter time_column, validation_split: "
     f"set by the feature spec {ROOT / 'data' / 'churn.spec.json'} (change it there)"),
])
def test_hyperparameters_the_training_script_refuses_are_refused_before_anything_runs(small_csv, tmp_path, value,
                                                                                       expected):
    """Checked by the script's own rules (training/hyperparameters.py) up front: they used to be found at
    Train model, after every record was ingested."""
    workspace = tmp_path / "workspace"
    for command in ("run --local", "evaluate --folds 2"):
        result = invoke(*command.split(), "--data", small_csv, "--workspace", workspace, "--hyperparameters", value)
        assert result.exit_code == 2, result.output
        assert f"error: --hyperparameters: {expected}\n" in one_error_line(result)
        assert not workspace.exists()


def test_hyperparameters_on_aws_are_set_when_deploying(tmp_path):
    result = invoke("run", "--hyperparameters", '{"max_depth": 2}')
    assert result.exit_code == 2
    assert "--hyperparameters is only used with --local" in one_error_line(result)
    assert "-c hyperparameters" in result.output
