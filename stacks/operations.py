"""Running the pipeline: a failure alarm with its topic, and the opt-in "new raw CSV" trigger."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from churn import contract
from churn.layout import RAW_PREFIX


class FailureAlarm(Construct):
    """Alarm when any execution fails within five minutes; notify an encrypted SNS topic."""

    def __init__(self, scope: Construct, construct_id: str, *, state_machine: sfn.IStateMachine, key: kms.IKey,
                 email: str | None) -> None:
        super().__init__(scope, construct_id)
        # CloudWatch publishes to the topic, so it must be able to use the topic's key.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublishToEncryptedTopic",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )
        self.topic = sns.Topic(self, "Topic", display_name="Churn pipeline failures", master_key=key, enforce_ssl=True)
        if email:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        alarm = cloudwatch.Alarm(
            self,
            "Alarm",
            alarm_description="A churn pipeline execution failed; see the state machine's execution history",
            metric=state_machine.metric_failed(period=Duration.minutes(5), statistic=cloudwatch.Stats.SUM),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))


class RawDataTrigger(Construct):
    """Start the pipeline when a .csv lands under raw/ (needs EventBridge notifications on the bucket)."""

    def __init__(self, scope: Construct, construct_id: str, *, bucket: s3.IBucket,
                 state_machine: sfn.IStateMachine) -> None:
        super().__init__(scope, construct_id)
        events.Rule(
            self,
            "Rule",
            description="Run the churn pipeline for every CSV created under raw/",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [bucket.bucket_name]},
                    "object": {"key": events.Match.wildcard(f"{RAW_PREFIX}/*.csv")},
                },
            ),
            targets=[targets.SfnStateMachine(
                state_machine,
                input=events.RuleTargetInput.from_object(
                    {contract.INPUT_KEY: events.EventField.from_path("$.detail.object.key")}),
                retry_attempts=3,
            )],
        )
