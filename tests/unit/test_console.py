"""pipeline/console.py: what users' data looks like on the screen. Ids, values, paths and messages are
text, never rich markup: '[/x]' or 'X[red]Y' in a customer id shows as written and does not crash a
command whose run succeeded."""

from __future__ import annotations

from rich.console import Console

from pipeline.backends import FeatureContribution, Prediction, RunResult
from pipeline.console import ConsoleReporter, render_prediction, render_run

MARKUP = ["[/x]", "X[red]Y", "AB[legacy]1"]


def recording() -> Console:
    return Console(record=True, width=200, highlight=False)


def test_a_runs_ids_paths_and_step_details_are_shown_as_written():
    out = recording()
    reporter = ConsoleReporter(out)
    reporter.run_started("Local run on d[/b]/x.csv (feature group g)")
    reporter.step_finished("Rank scores", 0.1, "3 customers; highest risk [/x] (0.953)")
    reporter.step_failed("Train model", 0.1, "InputError: value '[bold]' in row 3")
    top = [{"rank": rank, "record_id": record_id, "churn_probability": 0.9}
           for rank, record_id in enumerate(MARKUP, start=1)]
    render_run(out, RunResult(status="SUCCEEDED", run_id="r1", input="d[/b]/x.csv", top_customers=top), False)
    shown = out.export_text()
    for text in ("d[/b]/x.csv (feature group g)", "highest risk [/x] (0.953)", "value '[bold]' in row 3", *MARKUP):
        assert text in shown, text
    assert " input                d[/b]/x.csv" in shown


def test_a_predictions_values_are_shown_as_written():
    out = recording()
    prediction = Prediction(record_id="[/x]", churn_probability=0.5, base=0.0,
                            up=[FeatureContribution("payment_method", "[/pm]", 0.2)],
                            down=[FeatureContribution("plan", "X[red]Y", -0.1)],
                            model_version="1", model="m[/]", feature_groups=["g"])
    render_prediction(out, prediction, False)
    shown = out.export_text()
    for text in ("[/x]", "[/pm]", "X[red]Y", "m[/]"):
        assert text in shown, text
