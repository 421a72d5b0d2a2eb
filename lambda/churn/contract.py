"""What the stack, its handlers and the CLI agree on, written once: the stack's output names and the
keys of the execution input, of the Lambdas' payloads, of the states' results and of the run summary."""

from __future__ import annotations

# The stack's outputs (CloudFormation output keys), which the CLI reads.
BUCKET_OUTPUT = "BucketName"
STATE_MACHINE_OUTPUT = "StateMachineArn"
FEATURE_GROUP_OUTPUT = "FeatureGroupName"  # the first group: its entities are the ones scored
# {group: {FEATURE_GROUP_KEY: feature group name, TABLE_KEY: Glue table}}, labels included
FEATURE_GROUPS_OUTPUT = "FeatureGroups"
FEATURE_GROUP_KEY = "feature_group"
TABLE_KEY = "table"
MODEL_PACKAGE_GROUP_OUTPUT = "ModelPackageGroupName"

# The execution input: {INPUT_KEY: key} (one group, or a derivation's source) or {SOURCES: {group: key}}
# (several groups), with KNOWLEDGE_CUTOFF if the run names one. "Derive sources" puts what it wrote under
# SOURCES too, where the groups' branches read their keys.
INPUT_KEY = "input_key"
SOURCES = "sources"
KNOWLEDGE_CUTOFF = "knowledge_cutoff"

# "Validate input"'s result, kept under VALIDATION: the rows it read, the object version the Distributed
# Map then reads and the run's values the SQL takes, as Athena literals. With several groups, the
# Parallel state keeps its first branch's RUN_VALUE_KEYS there.
VALIDATION = "validation"
RECORDS = "records"
VERSION_ID = "version_id"
EVENT_TIME = "event_time"
EVENT_TIME_SQL = "event_time_sql"
RUN_STARTED_SQL = "run_started_sql"
KNOWLEDGE_CUTOFF_SQL = "knowledge_cutoff_sql"
RUN_VALUE_KEYS = (EVENT_TIME, EVENT_TIME_SQL, RUN_STARTED_SQL, KNOWLEDGE_CUTOFF_SQL)

# Where the state machine keeps the results the CLI and the run summary read ($.<name>), and their keys.
INGEST = "ingest"  # "Summarise ingest": {RECORDS: records written}
OFFLINE_COUNT = "offline_count"  # "Read offline count": {RECORDS: records the offline store holds}
TRAINING_SET = "training_set"  # an Athena query's: {OUTPUT_URI: its result CSV}
SCORING_SET = "scoring_set"
OUTPUT_URI = "output_uri"
TRAINING = "training"  # "Train model": {MODEL_ARTIFACT, TRAINING_JOB_NAME}
MODEL_ARTIFACT = "model_artifact"
TRAINING_JOB_NAME = "training_job_name"
EVALUATION = "evaluation"  # "Evaluate model": {PASSED, VALIDATION_AUC, REASON, EVALUATION_URI, ...}
PASSED = "passed"
VALIDATION_AUC = "validation_auc"
REASON = "reason"  # the gate's decision in words
EVALUATION_URI = "evaluation_uri"  # evaluation.json, copied out of the model artifact
REGISTRATION = "registration"  # "Register model": {MODEL_PACKAGE_ARN}
MODEL_PACKAGE_ARN = "model_package_arn"
SCORING = "scoring"  # "Score customers": {TRANSFORM_JOB_NAME}
TRANSFORM_JOB_NAME = "transform_job_name"
SCORES = "scores"  # "Rank scores": {SCORES_URI, CUSTOMERS, MODEL_VERSION, TOP}
SCORES_URI = "scores_uri"
CUSTOMERS = "customers"
MODEL_VERSION = "model_version"
TOP = "top"

# The run summary ("Summarise run", the execution's output): MODEL_ARTIFACT, VALIDATION_AUC,
# MODEL_PACKAGE_ARN, TRAINING_JOB_NAME, SCORES_URI and MODEL_VERSION as above, and these.
EXECUTION = "execution"  # the execution's name; "Record failure" keeps it beside the failure too
CUSTOMERS_SCORED = "customers_scored"
TOP_CUSTOMERS = "top_customers"

# The Lambdas' payloads: the keys a state invokes its function with and the handler reads, beside
# EVENT_TIME, MODEL_ARTIFACT, SCORES_URI, MODEL_PACKAGE_ARN and EXECUTION (the execution's name) above.
# What wraps an "Ingest batch" payload ("Items", "BatchInput") and the ResultWriterDetails "Summarise
# ingest" is handed are the Distributed Map's own keys, not ours.
BUCKET = "bucket"  # the data bucket ("Validate input", "Derive sources")
OBJECT_KEY = "key"  # the CSV's key in it
GROUP = "group"  # the feature group's name in the spec ("Validate input", "Summarise ingest", a batch)
FEATURE_GROUP_NAME = "feature_group_name"  # its name in Feature Store (a batch)
EXECUTION_INPUT = "execution_input"  # "Validate input": the execution input, for its KNOWLEDGE_CUTOFF
RESULT_WRITER = "result_writer"  # "Summarise ingest": the Map's ResultWriterDetails (where its manifest is)
FAILURES_URI = "failures_uri"  # where "Summarise ingest" writes the failed records, if any
ITEM_INDEX = "index"  # an ingest item (the Map's ItemSelector): the row's position in the file
ITEM_ROW = "row"  # and the row itself, {column: text}
OUTPUT_PREFIX = "output_prefix"  # "Evaluate model": where evaluation.json is copied to
THRESHOLD = "threshold"  # the quality gate's validation AUC threshold
TRANSFORM_OUTPUT = "transform_output"  # "Rank scores": the Batch Transform output prefix


def path(*keys: str) -> str:
    """The JSONPath of a key of the state's input: path(SOURCES, "activity") -> "$.sources.activity"."""
    return ".".join(("$", *keys))


# The JSONPaths several states read.
MODEL_ARTIFACT_PATH = path(TRAINING, MODEL_ARTIFACT)
TRAINING_JOB_NAME_PATH = path(TRAINING, TRAINING_JOB_NAME)
VALIDATION_AUC_PATH = path(EVALUATION, VALIDATION_AUC)
MODEL_PACKAGE_ARN_PATH = path(REGISTRATION, MODEL_PACKAGE_ARN)
