"""The operator CLI: `python -m pipeline ...` drives the pipeline locally (--local) or on AWS."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError
from rich.markup import escape
from rich.table import Table
from typer._click.exceptions import NoArgsIsHelpError, UsageError  # Typer 0.29 keeps its click here
from typer.core import TyperGroup
from typer.rich_utils import rich_format_error

from churn.model_quality import APPROVED
from churn.naming import DEFAULT_STACK_NAME
from churn.sql import knowledge_cutoff as checked_cutoff
from pipeline import aws_objects
from pipeline.aws_backend import AwsBackend
from pipeline.backends import FAILED, Backend, RunRequest, check_run_name
from pipeline.console import (
    ConsoleReporter,
    console,
    emit_json,
    err_console,
    fail,
    print_error,
    render_cv,
    render_prediction,
    render_run,
    render_runs,
    render_scores,
)
from pipeline.errors import EXIT_BAD_INPUT, BadInput, OperatorError, explain
from pipeline.execution_progress import POLL_SECONDS
from pipeline.local_backend import MIN_FOLDS, LocalBackend, check_input_file, load_spec
from pipeline.runner import DEFAULT_DATA, DEFAULT_SPEC, DEFAULT_WORKSPACE


class _UsageErrorsInOneLine(TyperGroup):
    """The command group: a usage error (an unknown command or option, a value outside an option's range) is
    one line and a hint, and its JSON line under --json, like every other error (Typer draws a box)."""

    def main(self, args: Sequence[str] | None = None, *rest: Any, standalone_mode: bool = True, **options: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(argv, *rest, standalone_mode=False, **options)
        except UsageError as exc:
            if isinstance(exc, NoArgsIsHelpError):
                rich_format_error(exc)  # the help, as Typer shows it
            else:
                if "--json" in argv:
                    emit_json({"status": FAILED, "error": "UsageError", "cause": exc.format_message()})
                print_error(exc.format_message(), f"{exc.ctx.command_path if exc.ctx else 'python -m pipeline'} --help")
            code = exc.exit_code
        except typer.Abort:  # end of input at a prompt
            print_error("aborted")
            code = 1
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(cls=_UsageErrorsInOneLine, add_completion=False, no_args_is_help=True, help=__doc__,
                  pretty_exceptions_enable=False)
spec_app = typer.Typer(no_args_is_help=True, help="Feature specs: infer one for your own CSV.")
app.add_typer(spec_app, name="spec")

DataOption = Annotated[Path | None, typer.Option(
    "--data", help=f"The input: a CSV (default: {DEFAULT_DATA}), the file a spec's derivation reads, or a folder "
                   "of <group>.csv for a spec with several groups")]
SpecOption = Annotated[Path, typer.Option("--spec", help="Feature spec JSON (see `spec infer`).")]
WorkspaceOption = Annotated[Path, typer.Option("--workspace", help="Local state: feature store, runs, model registry.")]
LocalRunsOption = Annotated[
    bool, typer.Option("--local", help="Local runs (in --workspace) instead of AWS executions.")
]
StackOption = Annotated[str, typer.Option("--stack-name", help="The deployed CloudFormation stack.")]
RegionOption = Annotated[str | None, typer.Option(
    "--region", help="AWS region of the stack (default: AWS_REGION or your profile's)")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON summary as the last line.")]
HyperparametersOption = Annotated[str | None, typer.Option(
    "--hyperparameters", help="Overrides of the training script's hyperparameters, a JSON object, e.g. "
                              "'{\"max_fit_rows\": 0}' (--local; names and defaults: training/hyperparameters.py)")]
PollOption = Annotated[float, typer.Option("--poll-seconds", hidden=True, min=0.0)]

LOCAL, AWS = True, False
# Options that mean something in one mode only: using them in the other is an error, not silently ignored.
MODE_OPTIONS: dict[str, tuple[bool, str]] = {
    "--data": (LOCAL, "on AWS the input must be in the bucket: `python -m pipeline upload --data PATH`, then "
                      "--data-key"),
    "--spec": (LOCAL, "on AWS the spec is the one deployed: `npx cdk deploy -c spec=PATH`"),
    "--workspace": (LOCAL, "add --local to use the runs and models in it"),
    "--threshold": (LOCAL, "on AWS the threshold is set when deploying: `npx cdk deploy -c quality_threshold=0.8`"),
    "--hyperparameters": (LOCAL, "on AWS they are set when deploying: `npx cdk deploy -c hyperparameters='{...}'`"),
    "--data-key": (AWS, "use --data PATH with --local"),
    "--source": (AWS, "use --data FOLDER (holding <group>.csv) with --local"),
    "--no-wait": (AWS, ""),
    "--region": (AWS, ""),
    "--stack-name": (AWS, ""),
}


def _backend(local: bool, workspace: Path | None, stack_name: str, region: str | None,
             poll_seconds: float = POLL_SECONDS, mode_options: dict[str, object] | None = None) -> Backend:
    """The backend --local chooses, once the options of the other mode (MODE_OPTIONS) are refused."""
    stack = "" if stack_name == DEFAULT_STACK_NAME else stack_name  # the defaults are not a choice
    chosen = None if workspace == DEFAULT_WORKSPACE else workspace
    for option, value in {**(mode_options or {}), "--workspace": chosen, "--stack-name": stack,
                          "--region": region}.items():
        mode, hint = MODE_OPTIONS[option]
        if value not in (None, False, [], "") and mode != local:
            raise BadInput(f"{option} is only used {'with --local' if mode == LOCAL else 'on AWS'}", hint)
    if local:
        return LocalBackend(workspace or DEFAULT_WORKSPACE, poll_seconds)
    return AwsBackend(stack_name, region, poll_seconds)


@contextmanager
def _command(as_json: bool) -> Iterator[ConsoleReporter]:
    """Progress to stdout (stderr with --json: its last stdout line is the summary); an OperatorError, or
    any botocore or OS error (explained as one: a full disk, a path that is not a folder), becomes one line
    and a hint (and a JSON line with --json), never a traceback."""
    reporter = ConsoleReporter(err_console if as_json else console)
    try:
        yield reporter
    except (OperatorError, BotoCoreError, ClientError, S3UploadFailedError, OSError) as raised:
        reporter.close()
        exc = explain(raised)
        if as_json:
            emit_json({"status": exc.status or FAILED, "error": exc.error, "cause": exc.message})
        fail(exc.message, exc.hint, exc.exit_code)
    finally:
        reporter.close()


def _sources(values: list[str]) -> dict[str, str]:
    sources: dict[str, str] = {}
    for value in values:
        group, equals, key = value.partition("=")
        if not equals or not group.strip() or not key.strip():
            raise BadInput(f"--source {value!r} is not GROUP=KEY", "e.g. --source activity=raw/activity.csv")
        sources[group.strip()] = key.strip()
    return sources


def _cutoff(value: str | None) -> str | None:
    try:
        return checked_cutoff(value) if value is not None else None
    except ValueError as exc:
        raise BadInput(f"--knowledge-cutoff: {exc}",
                       "e.g. --knowledge-cutoff '2026-01-31 23:59:59.999' (UTC)") from None


# -- run, status, runs ------------------------------------------------------------------------------
@app.command()
def run(
    local: Annotated[bool, typer.Option("--local", help="Run on this machine (no AWS account needed).")] = False,
    data: DataOption = None,
    spec: Annotated[Path | None, typer.Option("--spec", help=f"Feature spec JSON (default: {DEFAULT_SPEC})")] = None,
    workspace: Annotated[Path | None, typer.Option(
        "--workspace", help=f"Local state: feature store, runs, model registry (default: {DEFAULT_WORKSPACE})")] = None,
    threshold: Annotated[float | None, typer.Option(
        help="Minimum validation ROC AUC to register the model, 0.5-1.0 (--local).")] = None,
    hyperparameters: HyperparametersOption = None,
    data_key: Annotated[str | None, typer.Option(
        "--data-key", help=f"On AWS: the input in the stack's bucket (default: {aws_objects.DEFAULT_DATA_KEY})"
    )] = None,
    source: Annotated[list[str] | None, typer.Option(
        "--source", help="On AWS, a spec with several groups and no derivation: GROUP=KEY, one for each group"
    )] = None,
    knowledge_cutoff: Annotated[str | None, typer.Option(
        "--knowledge-cutoff", help="Train on no feature version written after this UTC time, "
                                   "'YYYY-MM-DD HH:MM:SS.fff' (default: everything written so far)")] = None,
    stack_name: StackOption = DEFAULT_STACK_NAME,
    region: RegionOption = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="Run name (default: run-YYYYmmdd-HHMMSS-xxxx on AWS)")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="On AWS: start, print the execution ARN, exit.")] = False,
    as_json: JsonOption = False,
    poll_seconds: PollOption = POLL_SECONDS,
) -> None:
    """Run the pipeline: ingest, wait for the offline store, build the training set, train, gate, register, score.

    On AWS (default) it starts the deployed state machine on input already in the bucket (see
    `upload`) and follows it; with --local everything runs on this machine.
    """
    with _command(as_json) as reporter:
        backend = _backend(local, workspace, stack_name, region, poll_seconds, {
            "--data": data, "--spec": spec, "--workspace": workspace, "--threshold": threshold,
            "--hyperparameters": hyperparameters, "--data-key": data_key, "--source": source, "--no-wait": no_wait})
        if data_key and source:
            raise BadInput("--data-key and --source are alternatives", "--source GROUP=KEY for each group of a "
                           "spec with several groups and no derivation; --data-key otherwise")
        if name:
            check_run_name(name)
        request = RunRequest(name=name, knowledge_cutoff=_cutoff(knowledge_cutoff), spec=spec, data=data,
                             threshold=threshold, hyperparameters=hyperparameters, data_key=data_key,
                             sources=_sources(source or []), wait=not no_wait)
        result = backend.run(request, reporter)
    render_run(reporter.out, result, as_json)


@app.command()
def status(
    execution: Annotated[str, typer.Argument(help="Execution name or ARN (a run id with --local).")],
    local: LocalRunsOption = False,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    stack_name: StackOption = DEFAULT_STACK_NAME,
    region: RegionOption = None,
    follow: Annotated[bool, typer.Option("--follow", help="Keep following a run still going, to its end.")] = False,
    as_json: JsonOption = False,
    poll_seconds: PollOption = POLL_SECONDS,
) -> None:
    """Show one run: its steps, result, and links. Exit 1 if it failed."""
    with _command(as_json) as reporter:
        backend = _backend(local, workspace, stack_name, region, poll_seconds)
        result = backend.status(execution, reporter, follow)
    render_run(reporter.out, result, as_json)


@app.command()
def runs(
    local: LocalRunsOption = False,
    max_runs: Annotated[int, typer.Option("--max", min=1, help="How many of the most recent runs.")] = 10,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    stack_name: StackOption = DEFAULT_STACK_NAME,
    region: RegionOption = None,
    as_json: JsonOption = False,
) -> None:
    """List recent runs: name, status, start, duration, validation AUC."""
    with _command(as_json) as reporter:
        listing = _backend(local, workspace, stack_name, region).runs(max_runs)
    render_runs(reporter.out, listing, as_json)


# -- upload -----------------------------------------------------------------------------------------
@app.command()
def upload(
    data: Annotated[Path, typer.Option("--data", help="The file to upload (validated first).")],
    key: Annotated[str | None, typer.Option("--key", help="Name under raw/ (default: the file's name)")] = None,
    spec: SpecOption = DEFAULT_SPEC,
    group: Annotated[str | None, typer.Option(
        "--group", help="With several feature groups and no derivation: the group this CSV is for")] = None,
    stack_name: StackOption = DEFAULT_STACK_NAME,
    region: RegionOption = None,
) -> None:
    """Validate an input file here, then put it in the deployed bucket's raw/ for `run`."""
    backend = AwsBackend(stack_name, region)
    with _command(False):
        feature_spec = load_spec(spec)
        checked = check_input_file(feature_spec, data, group)
        object_key = aws_objects.raw_key(data, key, csv_only=not feature_spec.derive)
        console.print(f"[green]✓[/] validated {escape(str(data))}: {escape(checked)}", soft_wrap=True)
        if not backend.deployment.spec_matches(feature_spec):
            raise BadInput(f"{spec} is not the feature spec stack '{stack_name}' was deployed with (feature groups "
                           f"{', '.join(backend.deployment.feature_groups.values())})",
                           "pass the deployed spec with --spec, or deploy this one: `npx cdk deploy -c spec=PATH`",
                           error="SpecMismatch")
        uri, replaced, trigger = backend.upload(data, object_key)
    console.print(f"[green]✓[/] uploaded {escape(uri)}" + (" (replaced the existing object)" if replaced else ""),
                  soft_wrap=True)
    if trigger:
        then = f"the stack starts a run for new raw/*.csv files; watch it with: python -m pipeline runs{backend.flags}"
    elif group:
        then = f"next: python -m pipeline run --source {group}={object_key} --source …{backend.flags}"
    else:
        then = f"next: python -m pipeline run --data-key {object_key}{backend.flags}"
    console.print(then, soft_wrap=True, markup=False)


# -- scores and predictions -------------------------------------------------------------------------
@app.command()
def scores(
    top: Annotated[int, typer.Option("--top", min=1, help="How many of the highest-risk customers.")] = 10,
    local: LocalRunsOption = False,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    run_name: Annotated[str | None, typer.Option(
        "--run", help="A local run id / an execution name (default: the latest approved model's run / the "
                      "latest succeeded execution)")] = None,
    stack_name: StackOption = DEFAULT_STACK_NAME,
    region: RegionOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the highest-risk customers: the batch scores a successful run wrote (scores.csv)."""
    with _command(as_json) as reporter:
        found = _backend(local, workspace, stack_name, region).scores(run_name, top)
    render_scores(reporter.out, found, as_json)


@app.command()
def predict(
    record_id: Annotated[str, typer.Option("--id", help="The customer's record identifier (e.g. 7590-VHVEG).")],
    local: Annotated[bool, typer.Option(
        "--local", help="The local online store and model registry (in --workspace) instead of AWS.")] = False,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    features: Annotated[int, typer.Option(
        "--features", min=1, max=50, help="How many contributions to show each way.")] = 5,
    stack_name: StackOption = DEFAULT_STACK_NAME,
    region: RegionOption = None,
    as_json: JsonOption = False,
) -> None:
    """Score one customer now: every online feature group's latest record and the latest approved model give
    the churn probability and the features that push it up or down most (XGBoost contributions)."""
    with _command(as_json) as reporter:
        if not record_id.strip():  # refused before the workspace or stack is read: it is the option that is wrong
            raise BadInput("--id is empty", "pass a customer's record identifier, e.g. --id 7590-VHVEG")
        prediction = _backend(local, workspace, stack_name, region).predict(record_id, features)
    render_prediction(reporter.out, prediction, as_json)


# -- local only: cross-validation, the model registry, specs ---------------------------------------
@app.command()
def evaluate(
    folds: Annotated[int, typer.Option(
        "--folds", min=MIN_FOLDS, max=20,
        help="Number of folds: stratified by id, or by time for an out-of-time spec.")] = 5,
    data: DataOption = None,
    spec: SpecOption = DEFAULT_SPEC,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    hyperparameters: HyperparametersOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cross-validate locally on --data alone (the workspace's feature store is left as it was): mean ± std ROC
    AUC over K folds, same script and settings; folded as the spec validates: stratified by id, or by time
    (rolling origin over the latest K periods) for an out-of-time spec."""
    with _command(as_json) as reporter:
        result = LocalBackend(workspace).cross_validate(spec, data, folds, reporter, hyperparameters)
    render_cv(reporter.out, result, as_json)


@app.command()
def models(workspace: WorkspaceOption = DEFAULT_WORKSPACE, as_json: JsonOption = False) -> None:
    """List the local model registry: every run's model, AUC and approval."""
    with _command(as_json):
        entries = LocalBackend(workspace).models()
    table = Table("version", "run", "status", "validation AUC", "threshold", "created", title="Local model registry")
    for e in entries:
        status = f"[green]{e.status}[/]" if e.status == APPROVED else f"[red]{e.status}[/]"
        table.add_row(str(e.version or "-"), e.run_id, status, f"{e.validation_auc:.4f}", f"{e.threshold:.4f}",
                      e.created[:19])
    (err_console if as_json else console).print(table)
    if as_json:
        # as registry.json holds them, but with absolute paths: in this workspace (registry.json's are relative to it)
        emit_json({"models": [asdict(e) for e in entries]})


def _spec_target(path: Path, out: Path | None, force: bool) -> Path:
    """Where spec infer writes: never over its input, and over an existing file (a spec the user may have
    reviewed and edited) only with --force."""
    target = out or path.with_suffix(".spec.json")
    named = f"--out {target}" if out else str(target)
    if not target.exists() or target.is_dir():  # a folder: the write says it cannot be written
        return target
    if path.exists() and target.samefile(path):
        fail(f"{named} is the input CSV: writing the spec there would replace your data",
             "name another file with --out", code=EXIT_BAD_INPUT)
    if not force:
        fail(f"{named} already exists", "--force replaces it (edits made to it are lost), or --out names another file",
             code=EXIT_BAD_INPUT)
    return target


@spec_app.command("infer")
def spec_infer(
    path: Annotated[Path, typer.Argument(help="A churn-like CSV with a header row.")],
    id_column: Annotated[str, typer.Option("--id", help="Column that identifies a customer.")],
    label_column: Annotated[str, typer.Option("--label", help="Column with the churn label (Yes/No, 1/0, ...).")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Where to write the spec (default: PATH with .spec.json)")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the spec if the file exists.")] = False,
) -> None:
    """Write a feature spec for any churn-like CSV (types inferred, names normalised, problems reported)."""
    import shlex

    from churn.csv_input import InputValidationError
    from churn.schema import SpecError
    from pipeline.spec_infer import infer_spec

    for option, column in (("--id", id_column), ("--label", label_column)):
        if not column.strip():
            fail(f"{option} must name a column of {path}", code=EXIT_BAD_INPUT)
    if id_column == label_column:
        fail(f"--id and --label both name the column '{id_column}': the id tells customers apart, the label says "
             "whether each churned", code=EXIT_BAD_INPUT)
    target = _spec_target(path, out, force)
    try:
        inference = infer_spec(path, id_column=id_column, label_column=label_column)
    except (InputValidationError, SpecError) as exc:
        fail(str(exc), code=EXIT_BAD_INPUT)
    try:
        target.write_text(inference.spec.to_json(indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        fail(f"--out {target}: cannot be written ({exc.strerror or exc})", code=EXIT_BAD_INPUT)
    features = inference.spec.groups[0].all_features  # an inferred spec has one feature group
    table = Table("feature", "type", "from column", title=f"{len(features)} features from {inference.rows} rows")
    # Column names and paths are the user's: a '[' in them is text, not rich markup.
    for f in features:
        table.add_row(f.name, f.type, escape(f.source) if f.source else "(set at ingestion)")
    console.print(table)
    # Never wrapped, however narrow the terminal: a warning or the command can be copied whole.
    for problem in inference.problems:
        console.print(f"[yellow]![/] {escape(problem)}", soft_wrap=True)
    console.print(f"wrote {escape(str(target))}", soft_wrap=True)
    command = f"python -m pipeline run --local --data {shlex.quote(str(path))} --spec {shlex.quote(str(target))}"
    console.print(escape(f"next: {command}"), soft_wrap=True)
