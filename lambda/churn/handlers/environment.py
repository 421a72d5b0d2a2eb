"""The handlers' environment, written once: the variables the stack sets and the handlers read, and the
Powertools service name and metrics namespace of the pipeline's functions."""

from __future__ import annotations

FEATURE_SPEC = "FEATURE_SPEC"  # the spec the stack was deployed with, as compact JSON
INGEST_WORKERS = "INGEST_WORKERS"  # churn.config.PipelineSettings.ingest_workers
SERVICE_NAME_VARIABLE = "POWERTOOLS_SERVICE_NAME"
METRICS_NAMESPACE_VARIABLE = "POWERTOOLS_METRICS_NAMESPACE"
SERVICE_NAME = "churn-pipeline"
METRICS_NAMESPACE = "ChurnPipeline"
