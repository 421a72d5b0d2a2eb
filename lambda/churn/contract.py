"""What the stack and the CLI agree on, written once: the stack's output names and the keys of the
execution input, of the states' results and of the run summary."""

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


def path(*keys: str) -> str:
    """The JSONPath of a key of the state's input: path(SOURCES, "activity") -> "$.sources.activity"."""
    return ".".join(("$", *keys))
