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
