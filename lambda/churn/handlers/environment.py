"""How the stack runs the handlers, written once: their entry points, the variables the stack sets and
the handlers read, and the Powertools service name and metrics namespace of the pipeline's functions."""

from __future__ import annotations


def handler(module: str) -> str:
    """The Lambda handler setting of churn/handlers/<module>.py: its function `handler`."""
    return f"churn.handlers.{module}.handler"


FEATURE_SPEC = "FEATURE_SPEC"  # the spec the stack was deployed with, as compact JSON
INGEST_WORKERS = "INGEST_WORKERS"  # churn.config.PipelineSettings.ingest_workers
SERVICE_NAME_VARIABLE = "POWERTOOLS_SERVICE_NAME"
METRICS_NAMESPACE_VARIABLE = "POWERTOOLS_METRICS_NAMESPACE"
SERVICE_NAME = "churn-pipeline"
METRICS_NAMESPACE = "ChurnPipeline"
