"""The operator CLI: `python -m pipeline ...` drives the pipeline locally (--local) or on AWS."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from churn.config import PipelineSettings
from churn.csv_input import InputValidationError
from churn.schema import FeatureSpec, SpecError
from pipeline import aws
from pipeline.aws import AwsError, AwsSession, Deployment, ProgressTracker
from pipeline.fast_validate import validate_file_fast
from pipeline.local_aws.batch_transform import extracted_model
from pipeline.prediction import Prediction, predict_record, record_values
from pipeline.runner import (
    DEFAULT_DATA,
    DEFAULT_SPEC,
    DEFAULT_WORKSPACE,
    LocalPipeline,
    PipelineFailed,
    Reporter,
    Workspace,
)

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False)
spec_app = typer.Typer(no_args_is_help=True, help="Feature specs: infer one for your own CSV.")
app.add_typer(spec_app, name="spec")

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
STEP_WIDTH = 30  # the longest state name, "Model below quality threshold", fits
LABEL_WIDTH = 20

console = Console()
err_console = Console(stderr=True)

DataOption = Annotated[
    Path | None, typer.Option("--data", help=f"CSV with the spec's columns (default: {DEFAULT_DATA})")
]
SpecOption = Annotated[Path, typer.Option("--spec", help="Feature spec JSON (see `spec infer`).")]
WorkspaceOption = Annotated[
    Path, typer.Option("--workspace", help="Local state: feature store, runs, model registry.")
]
LocalOption = Annotated[bool, typer.Option("--local", help="Run on this machine (no AWS account needed).")]
LocalRunsOption = Annotated[
    bool, typer.Option("--local", help="Local runs (in --workspace) instead of AWS executions.")
]
StackOption = Annotated[str, typer.Option("--stack-name", help="The deployed CloudFormation stack.")]
RegionOption = Annotated[
    str | None, typer.Option("--region", help="AWS region of the stack (default: AWS_REGION or your profile's)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON summary as the last line.")]
PollOption = Annotated[float, typer.Option("--poll-seconds", hidden=True, min=0.0)]


def fail(message: str, hint: str = "", code: int = EXIT_FAILED) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True, markup=True)
    if hint:
        err_console.print(f"[dim]hint:[/] {hint}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def load_spec(path: Path) -> FeatureSpec:
    try:
        return FeatureSpec.load(path)
    except SpecError as exc:
        fail(str(exc), "create one with `python -m pipeline spec infer PATH --id COLUMN --label COLUMN`",
             EXIT_BAD_INPUT)
        raise  # unreachable


class ConsoleReporter(Reporter):
    """Step lines, the same for a local run and an AWS execution."""

    def __init__(self, out: Console):
        self.out = out

    def step_started(self, step: str, since_start: float | None = None) -> None:
        at = f"  [dim]at +{_duration(since_start)}[/]" if since_start is not None else ""
        self.out.print(f"[cyan]▶[/] {step} …{at}", highlight=False)

    def step_finished(self, step: str, seconds: float, detail: str) -> None:
        self.out.print(f"[green]✓[/] {step:<{STEP_WIDTH}} [dim]{seconds:6.1f}s[/]  {detail}", highlight=False,
                       soft_wrap=True)

    def step_failed(self, step: str, seconds: float, error: str) -> None:
        self.out.print(f"[red]✗[/] {step:<{STEP_WIDTH}} [dim]{seconds:6.1f}s[/]  {error}", highlight=False,
                       soft_wrap=True)


def _emit_json(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()


def _print_summary(out: Console, rows: list[tuple[str, str]]) -> None:
    """`label  value` lines; values are never wrapped or cut, so paths and links stay copyable."""
    for label, value in rows:
        out.print(f" {label:<{LABEL_WIDTH}} {value}", highlight=False, soft_wrap=True)


def _status_markup(status: str) -> str:
    colour = {"SUCCEEDED": "green", "RUNNING": "cyan"}.get(status, "red")
    return f"[{colour}]{status}[/]"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _auc(value: float | None) -> str:
    return f"{value:.4f}" if value is not None else "-"


def _reject(option: str, value: object, mode: str, hint: str = "") -> None:
    """Options that mean nothing in this mode are an error, not silently ignored."""
    if value not in (None, False):
        fail(f"{option} is only used {mode}", hint, EXIT_BAD_INPUT)


def _aws_flags(stack_name: str, region: str | None) -> str:
    """The options to repeat in a suggested next command."""
    flags = "" if stack_name == aws.DEFAULT_STACK_NAME else f" --stack-name {stack_name}"
    return flags + (f" --region {region}" if region else "")


@contextmanager
def _aws_command(as_json: bool = False) -> Iterator[None]:
    """Any AWS error becomes one line and a hint (and a JSON line with --json); never a traceback."""
    try:
        with aws.aws_errors():
            yield
    except AwsError as exc:
        if as_json:
            _emit_json({"status": "FAILED", "error": exc.error, "cause": exc.message})
        fail(exc.message, exc.hint, exc.exit_code)


def _connect(stack_name: str, region: str | None) -> tuple[AwsSession, Deployment]:
    session = AwsSession.create(region)
    return session, Deployment.load(session.cloudformation, stack_name)


# -- run ------------------------------------------------------------------------------------------
@app.command()
def run(
    local: LocalOption = False,
    data: DataOption = None,
    spec: SpecOption = DEFAULT_SPEC,
    workspace: Annotated[Path | None, typer.Option(
        "--workspace", help=f"Local state: feature store, runs, model registry (default: {DEFAULT_WORKSPACE})"
    )] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Minimum validation ROC AUC to register the model (--local).")
    ] = None,
    data_key: Annotated[str | None, typer.Option(
        "--data-key", help=f"On AWS: the CSV in the stack's bucket (default: {aws.DEFAULT_DATA_KEY})"
    )] = None,
    stack_name: StackOption = aws.DEFAULT_STACK_NAME,
    region: RegionOption = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="Run name (default: run-YYYYmmdd-HHMMSS-xxxx on AWS)")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="On AWS: start, print the execution ARN, exit.")] = False,
    as_json: JsonOption = False,
    poll_seconds: PollOption = 3.0,
) -> None:
    """Run the pipeline: ingest, wait for the offline store, build the training set, train, gate, register.

    On AWS (default) it starts the deployed state machine on a CSV already in the bucket (see
    `upload`) and follows it; with --local everything runs on this machine.
    """
    if local:
        _reject("--data-key", data_key, "on AWS", "use --data PATH with --local")
        _reject("--no-wait", no_wait, "on AWS")
        _reject("--region", region, "on AWS")
        if stack_name != aws.DEFAULT_STACK_NAME:
            _reject("--stack-name", stack_name, "on AWS")
        _run_local(data or DEFAULT_DATA, spec, workspace or DEFAULT_WORKSPACE, threshold, name, as_json)
    else:
        _reject("--data", data, "with --local",
                "on AWS the CSV must be in the bucket: `python -m pipeline upload --data PATH`, then --data-key")
        _reject("--workspace", workspace, "with --local")
        _reject("--threshold", threshold, "with --local",
                "on AWS the threshold is set when deploying: `npx cdk deploy -c quality_threshold=0.8`")
        _run_aws(data_key or aws.DEFAULT_DATA_KEY, stack_name, region, name, no_wait, as_json, poll_seconds)


def _run_local(data: Path, spec: Path, workspace: Path, threshold: float | None, name: str | None,
               as_json: bool) -> None:
    out = err_console if as_json else console
    if name:
        try:
            aws.check_execution_name(name)
        except AwsError as exc:
            fail(exc.message, exc.hint, EXIT_BAD_INPUT)
        if (Workspace(workspace).runs / name).exists():
            fail(f"a local run named '{name}' already exists in {Workspace(workspace).runs}",
                 "choose another --name, or leave it out to get a generated one", EXIT_BAD_INPUT)
    feature_spec = load_spec(spec)
    settings = PipelineSettings()
    if threshold is not None:
        settings = PipelineSettings(**{**settings.to_dict(), "quality_threshold": threshold})
    pipeline = LocalPipeline(spec=feature_spec, settings=settings, workspace=Workspace(workspace),
                             reporter=ConsoleReporter(out))
    groups = ", ".join(pipeline.feature_groups.values())
    out.print(f"[bold]Local run[/] on {data} (feature group {groups})", highlight=False)
    try:
        outcome = pipeline.run(data, run_id=name)
    except InputValidationError as exc:
        if as_json:
            _emit_json({"status": "FAILED", "error": "InputValidationError", "cause": str(exc)})
        fail(str(exc), "fix the file and run again; nothing was written", EXIT_BAD_INPUT)
    except PipelineFailed as exc:
        outcome = exc.outcome  # type: ignore[attr-defined]
        if as_json:
            _emit_json(outcome.to_dict())
        fail(f"{exc.error}: {exc.cause}", f"run directory: {outcome.run_dir}")
    _print_summary(out, _local_rows(outcome.to_dict()))
    if outcome.top_customers:
        _print_top(out, f"Highest churn risk (model version {outcome.model_version})",
                   feature_spec.record_identifier.name, outcome.top_customers)
    if as_json:
        _emit_json(outcome.to_dict())


def _print_top(out: Console, title: str, id_column: str, rows: list[dict[str, Any]]) -> None:
    """The highest-risk customers, rank first (the title is a line of its own: never wrapped into the table)."""
    out.print(f"[bold]{title}[/]", highlight=False, soft_wrap=True)
    table = Table()
    table.add_column("rank", justify="right", no_wrap=True)
    table.add_column(id_column, no_wrap=True)
    table.add_column("churn probability", justify="right", no_wrap=True)
    for row in rows:
        table.add_row(str(row["rank"]), str(row["record_id"]), f"{float(row['churn_probability']):.4f}")
    out.print(table)


def _local_rows(run: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [
        ("status", _status_markup(run.get("status", ""))),
        ("run", str(run.get("run_id", ""))),
        ("records ingested", str(run.get("records_ingested", 0))),
        ("training rows", str(run.get("training_rows", 0))),
        ("validation ROC AUC", _auc(run.get("auc"))),
        ("quality gate", run.get("gate") or "-"),
        ("model version", str(run.get("model_version") or "-")),
        ("model artifact", run.get("model_artifact") or "-"),
    ]
    if run.get("report"):
        rows.append(("report", run["report"]))
    if run.get("scores"):
        rows.append(("customers scored", str(run.get("customers_scored", ""))))
        rows.append(("scores", run["scores"]))
    if run.get("error"):
        rows.append(("error", f"{run['error']}: {run.get('cause', '')}"))
    rows.append(("run directory", str(run.get("run_dir", ""))))
    return rows


def _run_aws(data_key: str, stack_name: str, region: str | None, name: str | None, no_wait: bool,
             as_json: bool, poll_seconds: float) -> None:
    out = err_console if as_json else console
    with _aws_command(as_json):
        name = aws.check_execution_name(name) if name else aws.new_execution_name()
        session, deployment = _connect(stack_name, region)
        key = aws.data_key(data_key, deployment.bucket)
        if aws.object_exists(session.s3, deployment.bucket, key) is False:
            raise AwsError(f"s3://{deployment.bucket}/{key} does not exist",
                           "upload it with `python -m pipeline upload --data PATH`"
                           + _aws_flags(stack_name, region), error="InputNotFound", exit_code=EXIT_BAD_INPUT)
        sfn = session.stepfunctions
        arn = aws.start_execution(sfn, deployment.state_machine_arn, key, name)
        links = deployment.console
        out.print(f"[bold]AWS run[/] {name} on s3://{deployment.bucket}/{key} "
                  f"(stack {stack_name}, {deployment.region})", highlight=False, soft_wrap=True)
        if no_wait:
            _print_summary(out, [("execution", arn), ("console", links.execution(arn))])
            out.print(f"follow it: python -m pipeline status {name} --follow{_aws_flags(stack_name, region)}",
                      highlight=False, soft_wrap=True)
            if as_json:
                _emit_json({"status": "RUNNING", "execution_name": name, "execution_arn": arn,
                            "input_key": key, "region": deployment.region, "console_url": links.execution(arn)})
            return
        _print_summary(out, [("console", links.execution(arn))])
        tracker = ProgressTracker(ConsoleReporter(out))
        execution = _follow(out, sfn, arn, tracker, poll_seconds, name, stack_name, region)
    _report_execution(out, execution, deployment, tracker.facts, as_json, stack_name, region, session)


def _follow(out: Console, sfn: Any, arn: str, tracker: ProgressTracker, poll_seconds: float, name: str,
            stack_name: str, region: str | None, reader: aws.HistoryReader | None = None) -> aws.Execution:
    """Follow live; Ctrl-C stops following, never the execution."""
    try:
        if out.is_terminal:
            with out.status("waiting for the first state …") as status:
                def tick(t: ProgressTracker) -> None:
                    current = t.current
                    if current:
                        running = (datetime.now(UTC) - current.entered).total_seconds()
                        status.update(f"{current.label} … {_duration(running)}")

                return aws.follow(sfn, arn, tracker, reader=reader, poll_seconds=poll_seconds, on_tick=tick)
        return aws.follow(sfn, arn, tracker, reader=reader, poll_seconds=poll_seconds)
    except KeyboardInterrupt:
        fail("stopped following; the execution keeps running on AWS",
             f"python -m pipeline status {name} --follow{_aws_flags(stack_name, region)}", EXIT_INTERRUPTED)
        raise  # unreachable


def _report_execution(out: Console, execution: aws.Execution, deployment: Deployment, facts: dict[str, Any],
                      as_json: bool, stack_name: str, region: str | None, session: AwsSession | None = None) -> None:
    links = deployment.console
    result = aws.execution_result(execution, links=links, model_package_group=deployment.model_package_group,
                                  facts=facts)
    hint = f"see the execution in the console: {result['console_url']}"
    if execution.error == aws.MAP_FAILURE_ERROR and session is not None and deployment.ingest_log_group:
        # The Map's error names no record: the ingest Lambda logged them.
        failed, result["failed_records"] = aws.ingest_failure_hint(
            session.client("logs"), deployment.ingest_log_group, execution, facts.get("event_time"))
        hint = f"{failed}; {hint}"
    rows = [
        ("status", _status_markup(execution.status)),
        ("execution", execution.name),
        ("input", f"s3://{deployment.bucket}/{execution.input_key}" if execution.input_key else "-"),
    ]
    if facts.get("records") is not None:
        rows.append(("records validated", str(facts["records"])))
    rows += [
        ("validation ROC AUC", _auc(execution.auc)),
        ("quality gate", result["gate"]),
        ("model artifact", result["model_artifact"]),
        ("model package", result["model_package_arn"]),
        ("training job", result["training_job_name"]),
        ("started", _when(execution.started)),
        ("duration", _duration(execution.duration_seconds)),
        ("execution console", result["console_url"]),
    ]
    if result.get("training_job_url"):
        rows.append(("training job console", result["training_job_url"]))
    if result.get("model_package_group_url") and execution.status == "SUCCEEDED":
        rows.append(("model registry", result["model_package_group_url"]))
    if result.get("scores_uri"):
        rows.append(("scores", result["scores_uri"]))
    _print_summary(out, [(label, value) for label, value in rows if value])
    if result.get("top_customers"):
        version = execution.output.get("model_version") or "-"
        _print_top(out, f"Highest churn risk (model version {version})", "customer", result["top_customers"])
    if as_json:
        _emit_json(result)
    if execution.status == "RUNNING":
        out.print(f"follow it: python -m pipeline status {execution.name} --follow{_aws_flags(stack_name, region)}",
                  highlight=False, soft_wrap=True)
    elif execution.status != "SUCCEEDED":
        fail(aws.error_text(execution.error or execution.status, execution.cause), hint)


# -- upload ---------------------------------------------------------------------------------------
@app.command()
def upload(
    data: Annotated[Path, typer.Option("--data", help="The CSV to upload (validated first).")],
    key: Annotated[str | None, typer.Option("--key", help="Name under raw/ (default: the file's name)")] = None,
    spec: SpecOption = DEFAULT_SPEC,
    stack_name: StackOption = aws.DEFAULT_STACK_NAME,
    region: RegionOption = None,
) -> None:
    """Validate a CSV here, then put it in the deployed bucket's raw/ for `run`."""
    feature_spec = load_spec(spec)
    try:
        object_key = aws.raw_key(data, key)
    except AwsError as exc:
        fail(exc.message, exc.hint, exc.exit_code)
    try:
        rows = validate_file_fast(str(data), feature_spec).rows
    except InputValidationError as exc:
        fail(str(exc), "fix the file and try again; nothing was uploaded", EXIT_BAD_INPUT)
    console.print(f"[green]✓[/] validated {data}: {rows} rows", highlight=False, soft_wrap=True)
    with _aws_command():
        session, deployment = _connect(stack_name, region)
        if deployment.spec_matches(feature_spec.fingerprint()) is False:
            raise AwsError(
                f"{spec} is not the feature spec stack '{stack_name}' was deployed with "
                f"(feature group {deployment.feature_group})",
                "pass the deployed spec with --spec, or deploy this one: `npx cdk deploy -c spec=PATH`",
                error="SpecMismatch", exit_code=EXIT_BAD_INPUT,
            )
        replaced = aws.object_exists(session.s3, deployment.bucket, object_key)
        uri = aws.upload_csv(session.s3, deployment.bucket, data, object_key)
        trigger = aws.raw_trigger_enabled(session.s3, deployment.bucket)
    console.print(f"[green]✓[/] uploaded {uri}" + (" (replaced the existing object)" if replaced else ""),
                  highlight=False, soft_wrap=True)
    flags = _aws_flags(stack_name, region)
    if trigger:
        console.print(f"the stack starts a run for new raw/*.csv files; watch it with: python -m pipeline runs{flags}",
                      highlight=False, soft_wrap=True)
    else:
        console.print(f"next: python -m pipeline run --data-key {object_key}{flags}", highlight=False, soft_wrap=True)


# -- status and runs ------------------------------------------------------------------------------
@app.command()
def status(
    execution: Annotated[str, typer.Argument(help="Execution name or ARN (a run id with --local).")],
    local: LocalRunsOption = False,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    stack_name: StackOption = aws.DEFAULT_STACK_NAME,
    region: RegionOption = None,
    follow: Annotated[bool, typer.Option("--follow", help="On AWS: keep following a running execution.")] = False,
    as_json: JsonOption = False,
    poll_seconds: PollOption = 3.0,
) -> None:
    """Show one run: its steps, result, and links. Exit 1 if it failed."""
    out = err_console if as_json else console
    if local:
        _local_status(out, workspace, execution, as_json)
        return
    with _aws_command(as_json):
        session, deployment = _connect(stack_name, region)
        sfn = session.stepfunctions
        arn = aws.execution_arn(deployment.state_machine_arn, execution)
        described = aws.describe_execution(sfn, arn)
        out.print(f"[bold]AWS run[/] {described.name} (stack {stack_name}, {deployment.region})", highlight=False)
        tracker = ProgressTracker(ConsoleReporter(out))
        reader = aws.HistoryReader(sfn, arn)
        tracker.feed(reader.new_events())
        if follow and not described.finished:
            described = _follow(out, sfn, arn, tracker, poll_seconds, described.name, stack_name, region, reader)
    _report_execution(out, described, deployment, tracker.facts, as_json, stack_name, region, session)


def _load_local_run(path: Path) -> dict[str, Any] | None:
    """A run.json plus when it started and how long it took (from its steps and when it was written)."""
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    seconds = sum(float(s) for s in run.get("step_seconds", {}).values())
    run["_duration"] = seconds
    run["_started"] = datetime.fromtimestamp(path.stat().st_mtime - seconds, tz=UTC)
    return run


def _read_local_runs(workspace: Path) -> list[dict[str, Any]]:
    found = (_load_local_run(path) for path in Workspace(workspace).runs.glob("*/run.json"))
    return sorted((r for r in found if r), key=lambda r: r["_started"], reverse=True)


def _local_status(out: Console, workspace: Path, run_id: str, as_json: bool) -> None:
    runs_dir = Workspace(workspace).runs
    plain = run_id not in ("", ".", "..") and "/" not in run_id and "\\" not in run_id
    run = _load_local_run(runs_dir / run_id / "run.json") if plain else None
    if run is None:
        fail(f"no local run '{run_id}' in {runs_dir}", "list them with `python -m pipeline runs --local`")
        return
    out.print(f"[bold]Local run[/] {run_id} (feature group {run.get('feature_group') or '-'})", highlight=False)
    reporter = ConsoleReporter(out)
    steps = list(run.get("step_seconds", {}).items())
    for i, (step, seconds) in enumerate(steps):
        if run.get("status") == "FAILED" and i == len(steps) - 1:
            reporter.step_failed(step, seconds, f"{run.get('error')}: {run.get('cause')}")
        else:
            reporter.step_finished(step, seconds, "")
    _print_summary(out, _local_rows(run) + [("started", _when(run["_started"]))])
    if as_json:
        _emit_json({k: v for k, v in run.items() if not k.startswith("_")})
    if run.get("status") != "SUCCEEDED":
        raise typer.Exit(EXIT_FAILED)


@app.command()
def runs(
    local: LocalRunsOption = False,
    max_runs: Annotated[int, typer.Option("--max", min=1, help="How many of the most recent runs.")] = 10,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    stack_name: StackOption = aws.DEFAULT_STACK_NAME,
    region: RegionOption = None,
    as_json: JsonOption = False,
) -> None:
    """List recent runs: name, status, start, duration, validation AUC."""
    if local:
        local_runs = _read_local_runs(workspace)[:max_runs]
        if not local_runs:
            fail(f"no local runs in {Workspace(workspace).runs}", "start one with `python -m pipeline run --local`")
        rows = [(r.get("run_id", "?"), r.get("status", "?"), r["_started"], r["_duration"], r.get("auc"),
                 r.get("error", "")) for r in local_runs]
        _runs_table(f"Local runs in {workspace}", rows)
        if as_json:
            _emit_json({"runs": [{k: v for k, v in r.items() if not k.startswith("_")} for r in local_runs]})
        return
    with _aws_command(as_json):
        session, deployment = _connect(stack_name, region)
        executions = aws.recent_executions(session.stepfunctions, deployment.state_machine_arn, max_runs)
    if not executions:
        console.print(f"no executions yet; start one with: python -m pipeline run{_aws_flags(stack_name, region)}",
                      highlight=False, soft_wrap=True)
    else:
        _runs_table(f"Executions of stack {stack_name} ({deployment.region})",
                    [(e.name, e.status, e.started, e.duration_seconds, e.auc, e.error) for e in executions])
    if as_json:
        links = deployment.console
        _emit_json({"runs": [aws.execution_result(e, links=links) for e in executions]})


def _runs_table(title: str, rows: list[tuple[str, str, datetime | None, float | None, float | None, str]]) -> None:
    table = Table(title=title)
    table.add_column("run", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("started", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("AUC", justify="right", no_wrap=True)
    table.add_column("error")
    for name, state, started, seconds, auc, error in rows:
        table.add_row(name, _status_markup(state), _when(started), _duration(seconds), _auc(auc), error or "")
    console.print(table)


# -- scores and predictions -----------------------------------------------------------------------
@app.command()
def scores(
    top: Annotated[int, typer.Option("--top", min=1, help="How many of the highest-risk customers.")] = 10,
    local: LocalRunsOption = False,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    run_name: Annotated[str | None, typer.Option(
        "--run", help="A local run id / an execution name (default: the latest approved model's run / the "
                      "latest succeeded execution)")] = None,
    stack_name: StackOption = aws.DEFAULT_STACK_NAME,
    region: RegionOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the highest-risk customers: the batch scores a successful run wrote (scores.csv)."""
    out = err_console if as_json else console
    if local:
        run_id, source, id_column, rows = _local_scores(workspace, run_name, top)
    else:
        with _aws_command(as_json):
            session, deployment = _connect(stack_name, region)
            run_id = run_name or aws.latest_succeeded_execution(session.stepfunctions, deployment.state_machine_arn)
            if not run_id:
                raise AwsError("no succeeded execution yet, so no scores",
                               f"start one with `python -m pipeline run{_aws_flags(stack_name, region)}`",
                               error="ScoresNotFound")
            key = aws.scores_key(run_id)
            source = f"s3://{deployment.bucket}/{key}"
            id_column, rows = aws.read_scores_object(session.s3, deployment.bucket, key, top)
    version = rows[0].model_version if rows else "-"
    _print_top(out, f"Highest churn risk: run {run_id} (model version {version})", id_column,
               [row.to_dict() for row in rows])
    _print_summary(out, [("scores", source)])
    if as_json:
        _emit_json({"run": run_id, "scores_uri": source, "model_version": version, "id_column": id_column,
                    "customers": [row.to_dict() for row in rows]})


def _local_scores(workspace: Path, run_id: str | None, top: int) -> tuple[str, str, str, list[Any]]:
    from churn.layout import SCORES_FILE, SCORES_PREFIX
    from churn.scoring import ScoringError, read_scores

    runs_dir = Workspace(workspace).runs
    if run_id is None:
        entry = _latest_approved(workspace)
        run_id = entry.run_id
    elif run_id in ("", ".", "..") or "/" in run_id or "\\" in run_id:
        fail(f"no local run '{run_id}' in {runs_dir}", "list them with `python -m pipeline runs --local`")
    path = runs_dir / run_id / SCORES_PREFIX / SCORES_FILE
    if not path.is_file():
        fail(f"run '{run_id}' has no scores ({path} does not exist)",
             "scores are written by a run that passed the quality gate; list runs with "
             "`python -m pipeline runs --local`")
    try:
        with open(path, encoding="utf-8", newline="") as lines:
            id_column, rows = read_scores(lines, str(path), top)
    except ScoringError as exc:
        fail(str(exc))
        raise  # unreachable
    return run_id, str(path), id_column, rows


def _latest_approved(workspace: Path) -> Any:
    try:
        entry = Workspace(workspace).registry.latest_approved()
    except RuntimeError as exc:
        fail(str(exc))
        raise  # unreachable
    if entry is None:
        fail(f"no approved model in {Workspace(workspace).registry.path}",
             "train one with `python -m pipeline run --local`")
    return entry


@app.command()
def predict(
    record_id: Annotated[str, typer.Option("--id", help="The customer's record identifier (e.g. 7590-VHVEG).")],
    local: Annotated[bool, typer.Option(
        "--local", help="The local online store and model registry (in --workspace) instead of AWS.")] = False,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    features: Annotated[int, typer.Option(
        "--features", min=1, max=50, help="How many contributions to show each way.")] = 5,
    stack_name: StackOption = aws.DEFAULT_STACK_NAME,
    region: RegionOption = None,
    as_json: JsonOption = False,
) -> None:
    """Score one customer now: the online store's record and the latest approved model give the churn
    probability and the features that push it up or down most (XGBoost contributions)."""
    from botocore.exceptions import ClientError

    out = err_console if as_json else console
    if local:
        entry = _latest_approved(workspace)
        group = _run_feature_group(workspace, entry.run_id)
        store_root = Workspace(workspace).feature_store
        if not store_root.is_dir():
            fail(f"no local feature store in {workspace}", "train one with `python -m pipeline run --local`")
        from pipeline.local_aws.feature_store import LocalFeatureStore, StoreLayoutError

        try:
            with LocalFeatureStore(store_root) as store:
                response = store.get_record(FeatureGroupName=group, RecordIdentifierValueAsString=record_id)
        except ClientError as exc:
            fail(aws.explain(exc).message)
        except StoreLayoutError as exc:
            fail(str(exc), "train again with `python -m pipeline run --local`")
        record = response.get("Record")
        model_label, model_version, artifact = entry.model_artifact, str(entry.version), Path(entry.model_artifact)
    else:
        with _aws_command(as_json):
            session, deployment = _connect(stack_name, region)
            if not deployment.feature_group or not deployment.model_package_group:
                raise AwsError(f"stack '{stack_name}' has no FeatureGroupName/ModelPackageGroupName output",
                               "redeploy it with `make deploy`", error="StackNotReady")
            group = deployment.feature_group
            model = aws.latest_approved_model(session.client("sagemaker"), deployment.model_package_group)
            if model is None:
                raise AwsError(f"no approved model in model package group {deployment.model_package_group}",
                               f"train one with `python -m pipeline run{_aws_flags(stack_name, region)}`",
                               error="NoApprovedModel")
            record = aws.online_record(session.client("sagemaker-featurestore-runtime"), group, record_id)
            if record:
                artifact = aws.download(session.s3, model.model_data_url)
            model_label, model_version = model.arn, str(model.version)
    if not record:
        fail(f"customer '{record_id}' is not in the online store of feature group {group}",
             "check the id; `python -m pipeline scores" + (" --local" if local else "") + "` lists scored customers")
    try:
        with extracted_model(artifact) as model_dir:
            prediction = predict_record(model_dir, record_id, record_values(record), top=features)
    except (OSError, ValueError) as exc:
        fail(f"could not score customer '{record_id}' with {model_label}: {' '.join(str(exc).split())}")
    _print_prediction(out, prediction, model_version, model_label, group)
    if as_json:
        _emit_json({**prediction.to_dict(), "model_version": model_version, "model": model_label,
                    "feature_group": group})


def _run_feature_group(workspace: Path, run_id: str) -> str:
    path = Workspace(workspace).runs / run_id / "run.json"
    try:
        group = json.loads(path.read_text(encoding="utf-8")).get("feature_group")
    except (OSError, ValueError):
        group = None
    if not group:
        fail(f"cannot tell which feature group the approved model's run used ({path} is missing or has none)",
             "train a new model with `python -m pipeline run --local`")
    return str(group)


def _print_prediction(out: Console, prediction: Prediction, version: str, model: str, group: str) -> None:
    _print_summary(out, [
        ("customer", prediction.record_id),
        ("churn probability", f"{prediction.churn_probability:.4f}"),
        ("model version", version),
        ("model", model),
        ("feature group", group),
    ])
    out.print("[bold]What moves this customer's churn risk[/] (XGBoost contributions, in log-odds)",
              highlight=False, soft_wrap=True)
    table = Table()
    table.add_column("", no_wrap=True)
    table.add_column("feature", no_wrap=True)
    table.add_column("value")
    table.add_column("contribution", justify="right", no_wrap=True)
    for direction, items in (("[red]▲ up[/]", prediction.up), ("[green]▼ down[/]", prediction.down)):
        for item in items:
            value = "(missing)" if item.value is None else str(item.value)
            table.add_row(direction, item.feature, value, f"{item.contribution:+.4f}")
    out.print(table)


# -- local registry and specs ---------------------------------------------------------------------
@app.command()
def evaluate(
    folds: Annotated[int, typer.Option("--folds", min=2, max=20, help="Number of stratified folds.")] = 5,
    data: DataOption = None,
    spec: SpecOption = DEFAULT_SPEC,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    as_json: JsonOption = False,
) -> None:
    """Cross-validate locally: mean ± std ROC AUC over stratified folds, same script and settings."""
    out = err_console if as_json else console
    pipeline = LocalPipeline(spec=load_spec(spec), settings=PipelineSettings(), workspace=Workspace(workspace),
                             reporter=ConsoleReporter(out))
    try:
        result = pipeline.cross_validate(data or DEFAULT_DATA, folds)
    except InputValidationError as exc:
        fail(str(exc), "fix the file and run again; nothing was written", EXIT_BAD_INPUT)
    except PipelineFailed as exc:
        fail(f"{exc.error}: {exc.cause}")
    aucs = ", ".join(f"{a:.4f}" for a in result["aucs"])
    _print_summary(out, [
        ("ROC AUC", f"{result['auc_mean']:.4f} ± {result['auc_std']:.4f} over {len(result['aucs'])} folds"),
        ("per fold", aucs),
        ("run directory", result["run_dir"]),
    ])
    if as_json:
        _emit_json(result)


@app.command()
def models(workspace: WorkspaceOption = DEFAULT_WORKSPACE) -> None:
    """List the local model registry: every run's model, AUC and approval."""
    entries = Workspace(workspace).registry.entries()
    if not entries:
        fail("no models registered yet", "train one with `python -m pipeline run --local`")
    table = Table(title="Local model registry")
    for column in ("version", "run", "status", "validation AUC", "threshold", "created"):
        table.add_column(column)
    for e in entries:
        status = f"[green]{e.status}[/]" if e.status == "Approved" else f"[red]{e.status}[/]"
        table.add_row(str(e.version or "-"), e.run_id, status, f"{e.validation_auc:.4f}", f"{e.threshold:.2f}",
                      e.created[:19])
    console.print(table)


@spec_app.command("infer")
def spec_infer(
    path: Annotated[Path, typer.Argument(help="A churn-like CSV with a header row.")],
    id_column: Annotated[str, typer.Option("--id", help="Column that identifies a customer.")],
    label_column: Annotated[str, typer.Option("--label", help="Column with the churn label (Yes/No, 1/0, ...).")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Where to write the spec (default: PATH with .spec.json)")
    ] = None,
) -> None:
    """Write a feature spec for any churn-like CSV (types inferred, names normalised, problems reported)."""
    from pipeline.spec_infer import infer_spec

    try:
        inference = infer_spec(path, id_column=id_column, label_column=label_column)
    except (InputValidationError, SpecError) as exc:
        fail(str(exc), code=EXIT_BAD_INPUT)
    target = out or path.with_suffix(".spec.json")
    target.write_text(inference.spec.to_json(indent=2) + "\n", encoding="utf-8")
    table = Table(title=f"{len(inference.spec.all_features)} features from {inference.rows} rows")
    for column in ("feature", "type", "from column"):
        table.add_column(column)
    for f in inference.spec.all_features:
        table.add_row(f.name, f.type, f.source or "(set at ingestion)")
    console.print(table)
    for problem in inference.problems:
        console.print(f"[yellow]![/] {problem}", highlight=False)
    console.print(f"wrote {target}", highlight=False)
    console.print(f"next: python -m pipeline run --local --data {path} --spec {target}", highlight=False)
