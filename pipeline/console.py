"""How the CLI shows things: step lines as a run goes, and each result type rendered once (a run, a list
of runs, scores, a prediction), whichever backend produced it. Errors are one line and a hint."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from datetime import datetime
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.status import Status
from rich.table import Column, Table
from rich.text import Text

from churn import steps
from pipeline.backends import RUNNING, SUCCEEDED, Prediction, Reporter, RunListing, RunResult, Scores
from pipeline.errors import EXIT_FAILED, error_text

STEP_WIDTH = 30  # the step column: every step of a single group's local run fits (a few AWS states overflow it)
LABEL_WIDTH = 20

# Our lines are plain text: no number or path colouring. Piped (no terminal, no COLUMNS), rich would
# lay tables out in 80 columns and cut their cells ("SUCCEED…"): a file or a pager gets them whole.
PIPED_WIDTH = 200
console = Console(highlight=False, width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else PIPED_WIDTH)
err_console = Console(stderr=True, highlight=False,
                      width=None if sys.stderr.isatty() or "COLUMNS" in os.environ else PIPED_WIDTH)


def print_error(message: str, hint: str = "") -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, markup=True)
    if hint:
        err_console.print(f"[dim]hint:[/] {escape(hint)}", soft_wrap=True)


def fail(message: str, hint: str = "", code: int = EXIT_FAILED) -> NoReturn:
    print_error(message, hint)
    raise typer.Exit(code)


def emit_json(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()


def duration(seconds: float | None) -> str:
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


def _status_text(status: str) -> Text:
    return Text(status, style={SUCCEEDED: "green", RUNNING: "cyan"}.get(status, "red"))


class ConsoleReporter(Reporter):
    """Step lines, the same for a local run and an AWS execution; while an execution is followed on a
    terminal, a spinner says which state is running."""

    def __init__(self, out: Console):
        self.out = out
        self.width = STEP_WIDTH
        self._spinner: Status | None = None

    def run_started(self, description: str, groups: tuple[str, ...] = ()) -> None:
        # With several groups, each group's states carry its name: the column fits the longest of them.
        labelled = groups if len(groups) > 1 else ()
        self.width = max([STEP_WIDTH, *(len(steps.for_group(s, g)) for s in steps.GROUP_STEPS for g in labelled)])
        head, _, more = description.partition("\n")
        words = head.split(" ", 2)  # "Local run …", "AWS run …": the first two in bold
        self.out.print(f"[bold]{escape(' '.join(words[:2]))}[/] {escape(' '.join(words[2:]))}", soft_wrap=True)
        if more:
            self.out.print(escape(more), soft_wrap=True)

    def step_started(self, step: str, since_start: float | None = None) -> None:
        at = f"  [dim]at +{duration(since_start)}[/]" if since_start is not None else ""
        self.out.print(f"[cyan]▶[/] {step} …{at}")

    def step_finished(self, step: str, seconds: float, detail: str, mark: str = "[green]✓[/]") -> None:
        self.out.print(f"{mark} {step:<{self.width}} [dim]{seconds:6.1f}s[/]  {escape(detail)}", soft_wrap=True)

    def step_failed(self, step: str, seconds: float, error: str) -> None:
        self.step_finished(step, seconds, error, "[red]✗[/]")

    def warning(self, step: str, message: str) -> None:
        self.out.print(f"[yellow]![/] {escape(message)}", soft_wrap=True)

    def still_running(self, step: str, seconds: float) -> None:
        if not self.out.is_terminal:
            return
        if self._spinner is None:
            self._spinner = self.out.status("")
            self._spinner.start()
        self._spinner.update(f"{step} … {duration(seconds)}")

    def close(self) -> None:
        if self._spinner is not None:
            self._spinner.stop()
            self._spinner = None


def print_rows(out: Console, rows: list[tuple[str, Any]]) -> None:
    """`label  value` lines; values are never wrapped or cut, so paths and links stay copyable. Rows
    without a value are left out. A value is text as written (a '[' in a path or id is not rich markup)."""
    for label, value in rows:
        if value not in (None, "", [], {}):
            out.print(Text.assemble(f" {label:<{LABEL_WIDTH}} ", value if isinstance(value, Text) else str(value)),
                      soft_wrap=True)


def _feature_groups(names: list[str]) -> tuple[str, str]:
    """A summary row; each name carries its spec group's (churn.naming)."""
    return "feature group" if len(names) == 1 else "feature groups", ", ".join(names)


def _periods(part: dict[str, Any]) -> str:
    """A span of observation periods (`first`, `last`, `count`) as `first … last (N periods)`."""
    span = part["first"] if part["first"] == part["last"] else f"{part['first']} … {part['last']}"
    return f"{span} ({part['count']} period{'s' if part['count'] != 1 else ''})"


def split_text(split: dict[str, Any]) -> str:
    """An out-of-time split as the periods on each side (evaluation.json's `split`)."""
    if split.get("kind") != "out_of_time":
        return ""
    unsettled = split.get("unsettled_periods")
    return (f"out of time on {split['time_column']}: trained on {_periods(split['train_periods'])}, "
            f"validated on {_periods(split['validation_periods'])}"
            + (f"; left out {_periods(unsettled)}: its labels settle {split['label_horizon_days']} days after "
               "observation, after the validation starts" if unsettled else ""))


def _cv_rows(cv: dict[str, Any]) -> list[tuple[str, Any]]:
    """How the folds were made, then each fold: its AUC, and for a time fold what it validated and trained on."""
    folding = cv["folding"]
    if folding["kind"] != "rolling_origin":
        return [("folds", f"stratified by {folding['id_column']} (each id's rows in one fold)"),
                ("per fold", ", ".join(f"{auc:.4f}" for auc in cv["aucs"]))]
    horizon = folding["label_horizon_days"]
    rows = [("folds", f"by time on {folding['time_column']} (rolling origin): each validates one of the latest "
                      "periods and trains on the earlier ones" + (f" whose labels settle ({horizon} days after "
                                                                  "observation) before it starts" if horizon else ""))]
    for fold in cv["fold_results"]:
        unsettled = fold.get("unsettled_periods")
        rows.append((f"fold {fold['fold']}", f"{fold['auc']:.4f}  validated on {fold['validation_periods']['first']} "
                     f"({fold['test_rows']} rows); trained on {_periods(fold['train_periods'])}"
                     + (f"; left out {_periods(unsettled)}, unsettled" if unsettled else "")))
    return rows


def render_cv(out: Console, cv: dict[str, Any], as_json: bool) -> None:
    """`evaluate`: mean ± std ROC AUC over the folds, how they were made, each fold, then the JSON line."""
    print_rows(out, [("ROC AUC", f"{cv['auc_mean']:.4f} ± {cv['auc_std']:.4f} over {len(cv['aucs'])} folds"),
                     *_cv_rows(cv), ("run directory", cv["run_dir"])])
    if as_json:
        emit_json(cv)


def _run_rows(run: RunResult) -> list[tuple[str, Any]]:
    ended = run.finished
    return [
        ("status", _status_text(run.status)),
        ("run", run.run_id),
        ("execution", run.execution_arn),
        ("input", run.input),
        _feature_groups(list(run.feature_groups.values())),
        ("knowledge cutoff", run.knowledge_cutoff),
        ("records ingested", run.records_ingested),
        ("training rows", run.training_rows),
        ("validation ROC AUC", _auc(run.auc) if ended else ""),
        ("validation split", split_text(run.split)),
        ("quality gate", (run.gate or "-") if ended else ""),
        ("model version", run.model_version),
        ("model artifact", run.model_artifact),
        ("model package", run.model_package_arn),
        ("training job", run.training_job_name),
        ("report", run.report),
        ("customers scored", run.customers_scored),
        ("scores", run.scores_uri),
        ("started", _when(run.started) if run.started else ""),
        ("duration", duration(run.duration_seconds) if run.duration_seconds is not None else ""),
        ("execution console", run.console_url),
        ("training job console", run.training_job_url),
        ("model registry", run.model_package_group_url if run.status == SUCCEEDED else ""),
        ("run directory", run.run_dir),
    ]


def print_top(out: Console, title: str, id_column: str, rows: list[dict[str, Any]]) -> None:
    """The highest-risk customers, rank first (the title is a line of its own: never wrapped into the table)."""
    out.print(Text(title, style="bold"), soft_wrap=True)
    table = Table(Column("rank", justify="right", no_wrap=True), Column(id_column, no_wrap=True),
                  Column("churn probability", justify="right", no_wrap=True))
    for row in rows:
        table.add_row(str(row["rank"]), Text(str(row["record_id"])), f"{float(row['churn_probability']):.4f}")
    out.print(table)


def render_run(out: Console, run: RunResult, as_json: bool) -> None:
    """A run's summary, its top customers, then: the JSON line, how to follow it, or its failure (exit 1)."""
    print_rows(out, _run_rows(run))
    if run.top_customers:
        print_top(out, f"Highest churn risk (model version {run.model_version or '-'})", run.id_column,
                  run.top_customers)
    if as_json:
        emit_json(run.to_dict())
    if run.next_command:
        out.print(f"follow it: {run.next_command}", soft_wrap=True)
    elif run.status != SUCCEEDED:
        fail(error_text(run.error or run.status, run.cause), run.hint)


def render_runs(out: Console, listing: RunListing, as_json: bool) -> None:
    if not listing.runs:
        out.print(listing.empty, soft_wrap=True)
    else:
        # The run id is what `status` takes: whole (the start time wraps first), folded if it must, never cut.
        # Errors follow the table: as a column they left no room for the ids in an 80-column terminal.
        ids = max(len(run.run_id) for run in listing.runs)
        table = Table(Column("run", no_wrap=True, overflow="fold", min_width=ids), Column("status", no_wrap=True),
                      "started", *(Column(name, justify="right", no_wrap=True) for name in ("duration", "AUC")),
                      title=listing.title)
        for run in listing.runs:
            table.add_row(run.run_id, _status_text(run.status), _when(run.started), duration(run.duration_seconds),
                          _auc(run.auc))
        out.print(table)
        for run in (run for run in listing.runs if run.error):
            out.print(f"{run.run_id}: {run.error}", markup=False, highlight=False)
    if as_json:
        emit_json({"runs": [run.to_dict() for run in listing.runs]})


def render_scores(out: Console, scores: Scores, as_json: bool) -> None:
    print_top(out, f"Highest churn risk: run {scores.run_id} (model version {scores.model_version})",
              scores.id_column, [row.to_dict() for row in scores.rows])
    print_rows(out, [("scores", scores.source)])
    if as_json:
        emit_json(scores.to_dict())


def render_prediction(out: Console, prediction: Prediction, as_json: bool) -> None:
    print_rows(out, [
        ("customer", prediction.record_id),
        ("churn probability", f"{prediction.churn_probability:.4f}"),
        ("model version", prediction.model_version),
        ("model", prediction.model),
        _feature_groups(prediction.feature_groups),
    ])
    out.print("[bold]What moves this customer's churn risk[/] (XGBoost contributions, in log-odds)", soft_wrap=True)
    table = Table(Column("", no_wrap=True), Column("feature", no_wrap=True), "value",
                  Column("contribution", justify="right", no_wrap=True))
    for direction, items in (("[red]▲ up[/]", prediction.up), ("[green]▼ down[/]", prediction.down)):
        for item in items:
            table.add_row(direction, item.feature, "(missing)" if item.value is None else Text(str(item.value)),
                          f"{item.contribution:+.4f}")
    out.print(table)
    if as_json:
        emit_json(asdict(prediction))
