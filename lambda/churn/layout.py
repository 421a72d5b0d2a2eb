"""Where a run's files live, written once: prefixes of the data bucket (a local run keeps its scores in
the same scores/ folder) and the file names the steps hand to each other. Prefixes carry no trailing slash."""

from __future__ import annotations

RAW_PREFIX = "raw"  # input CSVs (the bundled sample is deployed here)
STAGING_PREFIX = "staging"  # <execution>/<group>.csv: what a derivation writes for each feature group
INGEST_PREFIX = "ingest"  # <execution>/<group>/: the Distributed Map's results and the failed records
OFFLINE_STORE_PREFIX = "offline-store"  # written by Feature Store
QUERY_PREFIX = "query"  # Athena results
MODELS_PREFIX = "models"  # training job outputs and evaluations
SCORES_PREFIX = "scores"  # <execution>/: scoring input, transform output, scores.csv


def input_prefix(derives: bool) -> str:
    """Where a run's feature-group CSVs are read from: what a derivation staged, else the raw inputs."""
    return STAGING_PREFIX if derives else RAW_PREFIX


SAMPLE_DATA_NAME = "churn.csv"
# The bundled sample and its spec, relative to the project root: what `cdk deploy` and `run --local` use
# unless told otherwise (`-c spec=… -c data=…`, `--spec`/`--data`).
SAMPLE_DATA = f"data/{SAMPLE_DATA_NAME}"
SAMPLE_SPEC = "data/churn.spec.json"
TRAINING_ENTRY_POINT = "train_model.py"  # in training/: SAGEMAKER_PROGRAM, the module the container runs
HYPERPARAMETERS_MODULE = "hyperparameters.py"  # in training/: the script's hyperparameters, defaults and checks
# The training job's input channel: the script reads it from SM_CHANNEL_TRAIN (/opt/ml/input/data/train).
TRAINING_CHANNEL = "train"
TRAINING_SET_FILE = "training-set.csv"
MODEL_ARTIFACT_FILE = "model.tar.gz"  # what SageMaker packs a training job's model directory into
# A run's scoring folders, under scores/<execution>/ (a local run's scores/): what Batch Transform reads
# (the scoring set, alone) and what it writes.
SCORING_INPUT_DIR = "input"
TRANSFORM_OUTPUT_DIR = "transform"
SCORING_INPUT_FILE = "scoring-set.csv"
TRANSFORM_OUTPUT_SUFFIX = ".out"  # Batch Transform names its output <input file name>.out
SCORES_FILE = "scores.csv"
FAILED_RECORDS_FILE = "failed-records.json"

# Per-execution keys, as str.format templates: Python fills both fields, the stack fills `group` and
# hands `{}` for the execution to sfn.JsonPath.format.
STAGED_SOURCE = STAGING_PREFIX + "/{execution}/{group}.csv"
INGEST_RESULTS = INGEST_PREFIX + "/{execution}/{group}"
RUN_SCORES = SCORES_PREFIX + "/{execution}"
