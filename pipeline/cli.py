"""The operator CLI: `python -m pipeline ...` drives the pipeline locally (--local) or on AWS."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from churn.config import PipelineSettings
from churn.csv_input import InputValidationError
from churn.schema import FeatureSpec, SpecError
from pipeline.local import (
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

console = Console()
err_console = Console(stderr=True)

DataOption = Annotated[Path, typer.Option("--data", help="CSV with the spec's columns.")]
SpecOption = Annotated[Path, typer.Option("--spec", help="Feature spec JSON (see `spec infer`).")]
WorkspaceOption = Annotated[
    Path, typer.Option("--workspace", help="Local state: feature store, runs, model registry.")
]


def fail(message: str, hint: str = "", code: int = EXIT_FAILED) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
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
    def __init__(self, out: Console):
        self.out = out

    def step_started(self, step: str) -> None:
        self.out.print(f"[cyan]▶[/] {step} …", highlight=False)

    def step_finished(self, step: str, seconds: float, detail: str) -> None:
        self.out.print(f"[green]✓[/] {step:<24} [dim]{seconds:6.1f}s[/]  {detail}", highlight=False)

    def step_failed(self, step: str, seconds: float, error: str) -> None:
        self.out.print(f"[red]✗[/] {step:<24} [dim]{seconds:6.1f}s[/]  {error}", highlight=False, soft_wrap=True)


def _emit_json(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()


@app.command()
def run(
    local: Annotated[bool, typer.Option("--local", help="Run on this machine (no AWS account needed).")] = False,
    data: DataOption = DEFAULT_DATA,
    spec: SpecOption = DEFAULT_SPEC,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    threshold: Annotated[
        float | None, typer.Option(help="Minimum validation ROC AUC to register the model.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary as the last line.")] = False,
) -> None:
    """Run the pipeline: ingest, wait for the offline store, build the training set, train, gate, register."""
    if not local:
        fail("running on AWS is not available in this version", "use --local to run on this machine")
    out = err_console if as_json else console
    feature_spec = load_spec(spec)
    settings = PipelineSettings()
    if threshold is not None:
        settings = PipelineSettings(**{**settings.to_dict(), "quality_threshold": threshold})
    pipeline = LocalPipeline(spec=feature_spec, settings=settings, workspace=Workspace(workspace),
                             reporter=ConsoleReporter(out))
    out.print(f"[bold]Local run[/] on {data} (feature group {pipeline.group})", highlight=False)
    try:
        outcome = pipeline.run(data)
    except InputValidationError as exc:
        if as_json:
            _emit_json({"status": "FAILED", "error": "InputValidationError", "cause": str(exc)})
        fail(str(exc), "fix the file and run again; nothing was written", EXIT_BAD_INPUT)
    except PipelineFailed as exc:
        outcome = exc.outcome  # type: ignore[attr-defined]
        if as_json:
            _emit_json(outcome.to_dict())
        fail(f"{exc.error}: {exc.cause}", f"run directory: {outcome.run_dir}")
    summary = Table(show_header=False, box=None)
    summary.add_row("status", f"[green]{outcome.status}[/]")
    summary.add_row("records ingested", str(outcome.records_ingested))
    summary.add_row("training rows", str(outcome.training_rows))
    summary.add_row("validation ROC AUC", f"{outcome.auc:.4f}")
    summary.add_row("quality gate", outcome.gate)
    summary.add_row("model version", str(outcome.model_version))
    summary.add_row("model artifact", outcome.model_artifact)
    if outcome.report:
        summary.add_row("report", outcome.report)
    summary.add_row("run directory", outcome.run_dir)
    out.print(summary)
    if as_json:
        _emit_json(outcome.to_dict())


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
    out: Annotated[Path | None, typer.Option("--out", help="Where to write the spec [PATH with .spec.json]")] = None,
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
