"""Stack outputs, the failure alarm and the opt-in S3 trigger."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

from tests.infra.conftest import CDNOW_SPEC

OUTPUTS = {
    "BucketName",
    "StateMachineArn",
    "FeatureGroupName",
    "ModelPackageGroupName",
    "AthenaWorkGroup",
    "GlueDatabase",
    "GlueTable",
    "LogGroup",
    "IngestLogGroup",
    "AlarmTopicArn",
    "FeatureGroups",
}


def test_outputs(main, group):
    outputs = main.json["Outputs"]
    assert set(outputs) == OUTPUTS
    assert outputs["FeatureGroupName"]["Value"] == f"churnpipeline-churn-{group.fingerprint()}"
    assert outputs["GlueDatabase"]["Value"] == "churn_pipeline_feature_store"
    assert outputs["GlueTable"]["Value"] == f"churn_features_{group.fingerprint()}"
    assert json.loads(outputs["FeatureGroups"]["Value"]) == {"churn": {
        "feature_group": outputs["FeatureGroupName"]["Value"], "table": outputs["GlueTable"]["Value"]}}
    assert outputs["AthenaWorkGroup"]["Value"] == "churnpipeline-churn"
    assert outputs["ModelPackageGroupName"]["Value"] == "churnpipeline-churn-models"
    ingest_logs = main.json["Resources"][outputs["IngestLogGroup"]["Value"]["Ref"]]
    functions = [f for f in main.json["Resources"].values() if f["Type"] == "AWS::Lambda::Function"
                 and f["Properties"]["Handler"] == "churn.handlers.ingest_batch.handler"]
    (ingest,) = functions
    assert ingest_logs["Type"] == "AWS::Logs::LogGroup"
    assert ingest["Properties"]["LoggingConfig"]["LogGroup"] == outputs["IngestLogGroup"]["Value"]


def test_failed_executions_raise_an_alarm_on_an_encrypted_topic(main):
    machine_id, _ = main.one("AWS::StepFunctions::StateMachine")
    topic_id, topic = main.one("AWS::SNS::Topic")
    key_id, _ = main.one("AWS::KMS::Key")
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    main.template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            }
        },
    )
    main.template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "ExecutionsFailed",
            "Namespace": "AWS/States",
            "Dimensions": [{"Name": "StateMachineArn", "Value": {"Ref": machine_id}}],
            "Statistic": "Sum",
            "Period": 300,
            "Threshold": 1,
            "EvaluationPeriods": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": [{"Ref": topic_id}],
        },
    )
    assert not main.resources("AWS::SNS::Subscription")


def test_email_subscription_only_when_asked(variant):
    variant.template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"}
    )


def test_s3_trigger_is_opt_in(main, variant):
    assert not main.resources("AWS::Events::Rule")
    ((bucket_id, bucket),) = main.resources("AWS::S3::Bucket").items()
    assert "NotificationConfiguration" not in bucket["Properties"]

    bucket_id, _ = variant.one("AWS::S3::Bucket")
    machine_id, _ = variant.one("AWS::StepFunctions::StateMachine")
    variant.template.has_resource_properties(
        "Custom::S3BucketNotifications",
        {"NotificationConfiguration": {"EventBridgeConfiguration": {}}},
    )
    _, rule = variant.one("AWS::Events::Rule")
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.s3"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": bucket_id}]
    assert pattern["detail"]["object"]["key"] == [{"wildcard": "raw/*.csv"}]
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Ref": machine_id}
    assert target["InputTransformer"]["InputTemplate"] == '{"input_key":<detail-object-key>}'
    assert target["InputTransformer"]["InputPathsMap"] == {"detail-object-key": "$.detail.object.key"}


def test_environment_comes_from_cdk_default_variables(monkeypatch, tmp_path):
    from aws_cdk import Token

    from app import build_app

    monkeypatch.delenv("CDK_DEFAULT_ACCOUNT", raising=False)
    monkeypatch.setenv("CDK_DEFAULT_REGION", "ap-south-1")
    _, stack = build_app(outdir=str(tmp_path), security_checks=False)
    assert stack.region == "ap-south-1"
    assert Token.is_unresolved(stack.account)
    assert stack.stack_name == "ChurnPipeline"


def test_destroy_empties_the_model_registry_before_deleting_its_group(main):
    group_id, _ = main.one("AWS::SageMaker::ModelPackageGroup")
    cleanups = main.resources("Custom::ModelRegistryCleanup")
    assert len(cleanups) == 1
    (cleanup,) = cleanups.values()
    assert cleanup["Properties"]["ModelPackageGroupName"] == "churnpipeline-churn-models"
    # depends on the group: CloudFormation deletes the clean-up (running it) before the group
    assert group_id in cleanup["DependsOn"]
    handlers = [f["Properties"]["Handler"] for f in main.resources("AWS::Lambda::Function").values()]
    assert "churn.handlers.registry_cleanup.handler" in handlers
    main.template.has_resource_properties(
        "AWS::IAM::Policy",
        {"PolicyDocument": {"Statement": Match.array_with([Match.object_like(
            {"Action": "sagemaker:DeleteModelPackage",
             "Resource": {"Fn::Join": ["", Match.array_with([Match.string_like_regexp(
                 "model-package/churnpipeline-churn-models/\\*")])]}})])}},
    )


def test_destroy_deletes_the_models_that_interrupted_executions_left(main):
    """A stopped or timed-out execution runs no catcher, so "Delete scoring model" never ran: on destroy a
    custom resource deletes the models named after such executions (churn.handlers.scoring_model_cleanup)."""
    machine_id, _ = main.one("AWS::StepFunctions::StateMachine")
    (sweep,) = main.resources("Custom::ScoringModelCleanup").values()
    # it references the state machine: CloudFormation deletes it (running the sweep) before the machine
    assert sweep["Properties"]["StateMachineArn"] == {"Ref": machine_id}
    function_id = sweep["Properties"]["ServiceToken"]["Fn::GetAtt"][0]
    provider = main.json["Resources"][function_id]["Properties"]["Environment"]["Variables"]
    handler_id = provider["USER_ON_EVENT_FUNCTION_ARN"]["Fn::GetAtt"][0]
    handler = main.json["Resources"][handler_id]
    assert handler["Properties"]["Handler"] == "churn.handlers.scoring_model_cleanup.handler"
    role = {"Ref": handler["Properties"]["Role"]["Fn::GetAtt"][0]}
    statements = [s for p in main.resources("AWS::IAM::Policy").values() if role in p["Properties"]["Roles"]
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]
    granted = {s["Action"]: s["Resource"] for s in statements if isinstance(s["Action"], str)}
    assert granted["states:ListExecutions"] == {"Ref": machine_id}
    assert granted["sagemaker:DeleteModel"]["Fn::Join"][1][-1] == ":model/*"


def test_the_s3_trigger_needs_one_file_per_run(tmp_path):
    from app import build_app

    spec = json.loads(CDNOW_SPEC.read_text())
    del spec["derive"]
    path = tmp_path / "sources.spec.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="enable_s3_trigger starts a run from one uploaded file"):
        build_app({"spec": str(path), "enable_s3_trigger": "true"}, outdir=str(tmp_path), security_checks=False)


def test_no_resource_is_retained(main):
    retained = [rid for rid, r in main.json["Resources"].items()
                if r.get("DeletionPolicy") == "Retain" or r.get("UpdateReplacePolicy") == "Retain"]
    assert retained == []
