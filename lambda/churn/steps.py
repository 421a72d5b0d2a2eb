"""The state machine's state names, written once: the stack names its states with them, the local run
reports its steps with them and the CLI follows an execution's progress with them."""

from __future__ import annotations

DERIVE_SOURCES = "Derive sources"
INGEST_GROUPS = "Ingest feature groups"  # with several groups: one branch a group
VALIDATE_INPUT = "Validate input"
INGEST_FEATURES = "Ingest features"
INGEST_BATCH = "Ingest batch"
SUMMARISE_INGEST = "Summarise ingest"
START_OFFLINE_CHECKS = "Start offline store checks"
COUNT_OFFLINE_RECORDS = "Count offline records"
READ_OFFLINE_COUNT = "Read offline count"
RECORD_OFFLINE_CHECK = "Record offline check"
OFFLINE_STORE_COMPLETE = "Offline store complete?"
WAIT_FOR_OFFLINE_STORE = "Wait for offline store"
OFFLINE_STORE_TIMED_OUT = "Offline store timed out"
FEATURE_GROUP_READY = "Feature group ready"  # with several groups: where a group's branch ends
BUILD_TRAINING_SET = "Build training set"
TRAIN_MODEL = "Train model"
EVALUATE_MODEL = "Evaluate model"
MODEL_GOOD_ENOUGH = "Model good enough?"
MODEL_BELOW_THRESHOLD = "Model below quality threshold"
REGISTER_MODEL = "Register model"
BUILD_SCORING_SET = "Build scoring set"
STAGE_SCORING_INPUT = "Stage scoring input"
CREATE_SCORING_MODEL = "Create scoring model"
SCORE_CUSTOMERS = "Score customers"
DELETE_SCORING_MODEL = "Delete scoring model"
DELETE_SCORING_MODEL_AFTER_FAILURE = "Delete scoring model after failure"
RANK_SCORES = "Rank scores"
SUMMARISE_RUN = "Summarise run"
PIPELINE_SUCCEEDED = "Pipeline succeeded"
RECORD_FAILURE = "Record failure"
PIPELINE_FAILED = "Pipeline failed"
# The errors the pipeline's own Fail states end an execution with (state machine error names, not exceptions)
OFFLINE_STORE_TIMEOUT = "OfflineStoreTimeout"  # "Offline store timed out"
BELOW_THRESHOLD = "ModelQualityBelowThreshold"  # "Model below quality threshold"

# The states each feature group has of its own; with several groups their names carry the group's.
GROUP_STEPS = (VALIDATE_INPUT, INGEST_FEATURES, INGEST_BATCH, SUMMARISE_INGEST, START_OFFLINE_CHECKS,
               COUNT_OFFLINE_RECORDS, READ_OFFLINE_COUNT, RECORD_OFFLINE_CHECK, OFFLINE_STORE_COMPLETE,
               WAIT_FOR_OFFLINE_STORE, OFFLINE_STORE_TIMED_OUT, FEATURE_GROUP_READY)


def for_group(step: str, group: str | None) -> str:
    """A group's own state: "Ingest features (activity)"; a single-group spec's keep the plain names."""
    return f"{step} ({group})" if group else step


def base_step(name: str) -> str:
    """The step a state name stands for: "Ingest features (activity)" -> "Ingest features"."""
    step, _, group = name.partition(" (")
    return step if group.endswith(")") and step in GROUP_STEPS else name


def group_of(name: str) -> str | None:
    """The group a state belongs to: "Ingest features (activity)" -> "activity"; None for a run's state."""
    step = base_step(name)
    return name[len(step) + 2:-1] if step != name else None
