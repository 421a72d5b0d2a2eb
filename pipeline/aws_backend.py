"""The CLI's AWS backend: executions of the deployed state machine (started, followed, listed), their
scores, and one customer predicted from the online store with the latest approved model package."""

from __future__ import annotations

import functools
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from churn import contract, steps
from churn.ingest import IngestError
from churn.layout import RUN_SCORES, SCORES_FILE
from churn.naming import DEFAULT_STACK_NAME
from pipeline import aws_objects
from pipeline.aws_session import AwsSession, Deployment
from pipeline.backends import RUNNING, SUCCEEDED, Prediction, Reporter, RunListing, RunRequest, RunResult, Scores
from pipeline.errors import BadInput, Interrupted, OperatorError, explain, parse_json, readable_cause
from pipeline.execution_progress import (
    POLL_SECONDS,
    Execution,
    ExecutionFacts,
    HistoryReader,
    ProgressTracker,
    describe_execution,
    execution_arn,
    follow,
    recent_executions,
)
from pipeline.prediction import online_features, predict_artifact


def new_execution_name(now: datetime | None = None) -> str:
    return f"run-{(now or datetime.now(UTC)):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


class AwsBackend:
    def __init__(self, stack_name: str, region: str | None, poll_seconds: float = POLL_SECONDS):
        self.stack_name = stack_name
        self.region = region
        self.poll_seconds = poll_seconds
        # The options to repeat in a suggested next command.
        self.flags = ("" if stack_name == DEFAULT_STACK_NAME else f" --stack-name {stack_name}") + (
            f" --region {region}" if region else "")

    @functools.cached_property
    def session(self) -> AwsSession:
        return AwsSession(self.region)

    @functools.cached_property
    def deployment(self) -> Deployment:
        return Deployment.load(self.session.client("cloudformation"), self.stack_name)

    # -- run, status, runs --------------------------------------------------------------------
    def run(self, request: RunRequest, reporter: Reporter) -> RunResult:
        name = request.name or new_execution_name()
        payload = self._execution_input(request)
        sfn = self.session.client("stepfunctions")
        arn = sfn.start_execution(stateMachineArn=self.deployment.state_machine_arn, name=name,
                                  input=json.dumps(payload))["executionArn"]
        reporter.run_started(f"AWS run {name} on {self._input(payload)} (stack {self.stack_name}, "
                             f"{self.deployment.region})\n console: {self.deployment.console.execution(arn)}",
                             tuple(self.deployment.feature_groups))
        if not request.wait:
            return self._result(Execution(name=name, arn=arn, status=RUNNING, input=payload), ExecutionFacts())
        return self._follow(reporter, arn, name)

    def _execution_input(self, request: RunRequest) -> dict[str, Any]:
        """`{"input_key": key}` (one group, or a derivation), or `{"sources": {group: key}}` (several groups
        without one); each object must exist."""
        bucket = self.deployment.bucket
        if request.sources:
            sources = {group: aws_objects.data_key(key, bucket, "--source") for group, key in request.sources.items()}
            self._check_groups(sources)
            payload: dict[str, Any] = {contract.SOURCES: sources}
        else:
            sources = {"": aws_objects.data_key(request.data_key or aws_objects.DEFAULT_DATA_KEY, bucket)}
            payload = {contract.INPUT_KEY: sources[""]}
        for key in sources.values():
            if aws_objects.object_exists(self.session.client("s3"), bucket, key) is False:
                raise BadInput(f"s3://{bucket}/{key} does not exist",
                               f"upload it with `python -m pipeline upload --data PATH`{self.flags}",
                               error="InputNotFound")
        if request.knowledge_cutoff:
            payload[contract.KNOWLEDGE_CUTOFF] = request.knowledge_cutoff
        return payload

    def _check_groups(self, sources: dict[str, str]) -> None:
        deployed = set(self.deployment.feature_groups)
        missing, unknown = sorted(deployed - set(sources)), sorted(set(sources) - deployed)
        if missing or unknown:
            problem = "; ".join(part for part in (missing and f"missing {', '.join(missing)}",
                                                  unknown and f"unknown {', '.join(unknown)}") if part)
            raise BadInput(f"--source must name every feature group of stack '{self.stack_name}' ({problem})",
                           "one --source GROUP=KEY for each of " + ", ".join(sorted(deployed)), error="InvalidSources")

    def _follow(self, reporter: Reporter, arn: str, name: str, tracker: ProgressTracker | None = None,
                reader: HistoryReader | None = None) -> RunResult:
        """Follow live; Ctrl-C stops following, never the execution."""
        tracker = tracker or ProgressTracker(reporter)
        try:
            execution = follow(self.session.client("stepfunctions"), arn, tracker, reader=reader,
                               poll_seconds=self.poll_seconds)
        except KeyboardInterrupt:
            raise Interrupted("stopped following; the execution keeps running on AWS",
                              f"python -m pipeline status {name} --follow{self.flags}", status=RUNNING) from None
        except (ClientError, BotoCoreError) as exc:  # expired credentials, a lost network: the execution goes on
            failed = explain(exc)
            raise OperatorError(f"stopped following: {failed.message}; the execution is not affected",
                                f"follow it again with `python -m pipeline status {name} --follow{self.flags}`"
                                + (f"; first: {failed.hint}" if failed.hint else ""),
                                error=failed.error, status=RUNNING) from None
        return self._result(execution, tracker.facts)

    def status(self, name: str, reporter: Reporter, follow: bool) -> RunResult:
        sfn = self.session.client("stepfunctions")
        arn = execution_arn(self.deployment.state_machine_arn, name)
        described = describe_execution(sfn, arn)
        reporter.run_started(f"AWS run {described.name} (stack {self.stack_name}, {self.deployment.region})",
                             tuple(self.deployment.feature_groups))
        tracker, reader = ProgressTracker(reporter), HistoryReader(sfn, arn)
        tracker.feed(reader.new_events())
        if follow and not described.finished:
            return self._follow(reporter, arn, described.name, tracker, reader)
        return self._result(described, tracker.facts)

    def runs(self, limit: int) -> RunListing:
        executions = recent_executions(self.session.client("stepfunctions"), self.deployment.state_machine_arn,
                                       limit)
        # ListExecutions orders closed executions by their stop, running ones by their start: shown by start
        executions.sort(key=lambda e: e.started or datetime.min.replace(tzinfo=UTC), reverse=True)
        return RunListing(f"Executions of stack {self.stack_name} ({self.deployment.region})",
                          [self._result(e, ExecutionFacts(), explain=False) for e in executions],
                          f"no executions yet; start one with: python -m pipeline run{self.flags}")

    # -- what a result says ---------------------------------------------------------------------
    def _result(self, execution: Execution, facts: ExecutionFacts, explain: bool = True) -> RunResult:
        out, deployment = execution.output, self.deployment
        links = deployment.console
        job = str(out.get(contract.TRAINING_JOB_NAME) or facts.training_job_name)
        result = RunResult(
            status=execution.status, run_id=execution.name, input=self._input(execution.input),
            feature_groups=deployment.feature_groups,
            knowledge_cutoff=str(execution.input.get(contract.KNOWLEDGE_CUTOFF) or ""),
            records_ingested=facts.records_ingested, auc=execution.auc, gate=_gate(execution, facts.evaluation),
            model_version=str(out.get(contract.MODEL_VERSION) or ""),
            model_artifact=out.get(contract.MODEL_ARTIFACT, ""),
            model_package_arn=out.get(contract.MODEL_PACKAGE_ARN, ""), training_job_name=job,
            customers_scored=out.get(contract.CUSTOMERS_SCORED), scores_uri=out.get(contract.SCORES_URI, ""),
            top_customers=out.get(contract.TOP_CUSTOMERS) or [], error=execution.error,
            cause=readable_cause(execution.cause), started=execution.started,
            duration_seconds=execution.duration_seconds, execution_arn=execution.arn, region=links.region,
            console_url=links.execution(execution.arn), training_job_url=links.training_job(job) if job else "",
            model_package_group_url=(links.model_package_group(deployment.model_package_group)
                                     if deployment.model_package_group else ""),
        )
        if not execution.finished:
            result.next_command = f"python -m pipeline status {execution.name} --follow{self.flags}"
        if explain:
            result.split = self._split(facts.evaluation)
            if execution.status != SUCCEEDED and execution.finished:
                self._explain_failure(execution, result)
        return result

    def _input(self, payload: dict[str, Any]) -> str:
        keys = ([payload[contract.INPUT_KEY]] if payload.get(contract.INPUT_KEY)
                else list(payload.get(contract.SOURCES, {}).values()))
        return ", ".join(f"s3://{self.deployment.bucket}/{key}" for key in keys)

    def _split(self, evaluation: dict[str, Any]) -> dict[str, Any]:
        """How the validation rows were chosen: evaluation.json's `split` ("Evaluate model" copies the file
        to S3); best effort, the summary only shows it."""
        uri = evaluation.get(contract.EVALUATION_URI)
        if not uri:
            return {}
        try:
            return parse_json(aws_objects.read_object(self.session.client("s3"), uri).decode("utf-8")).get("split", {})
        except (OperatorError, ClientError, BotoCoreError, UnicodeDecodeError):
            return {}

    def _explain_failure(self, execution: Execution, result: RunResult) -> None:
        """The failure's own words, the records or log line behind it, and where to look."""
        result.hint = f"see the execution in the console: {result.console_url}"
        if execution.error == IngestError.__name__:
            result.failed_records = aws_objects.failed_ingest_records(
                self.session.client("s3"), self.deployment.bucket, execution.name, list(self.deployment.feature_groups))
            result.hint = f"fix those rows and run again (records already written are rewritten); {result.hint}"
        job = str(parse_json(execution.cause).get("TrainingJobName") or "")  # a training job's failure
        if job:
            line, where = aws_objects.training_script_error(self.session.client("logs"), job)
            if line:
                result.cause = f"training job {job} failed: {line}"
            result.hint = f"{where}; {result.hint}"

    # -- scores and predictions ------------------------------------------------------------------
    def scores(self, run_id: str | None, top: int) -> Scores:
        sfn = self.session.client("stepfunctions")
        if run_id is None:  # the newest; a page may hold fewer than asked for, even none, and a next token
            pages = sfn.get_paginator("list_executions").paginate(
                stateMachineArn=self.deployment.state_machine_arn, statusFilter=SUCCEEDED,
                PaginationConfig={"MaxItems": 1})
            run_id = next((e["name"] for page in pages for e in page.get("executions", [])), None)
        if not run_id:
            raise OperatorError("no succeeded execution yet, so no scores",
                                f"start one with `python -m pipeline run{self.flags}`", error="ScoresNotFound")
        key = f"{RUN_SCORES.format(execution=run_id)}/{SCORES_FILE}"
        return aws_objects.read_scores_object(self.session.client("s3"), self.deployment.bucket, key, run_id, top)

    def predict(self, record_id: str, features: int) -> Prediction:
        deployment = self.deployment
        if not deployment.feature_groups or not deployment.model_package_group:
            raise OperatorError(f"stack '{self.stack_name}' has no {contract.FEATURE_GROUPS_OUTPUT}/"
                                f"{contract.MODEL_PACKAGE_GROUP_OUTPUT} output",
                                "redeploy it with `make deploy`", error="StackNotReady")
        sagemaker = self.session.client("sagemaker")
        approved = aws_objects.latest_approved_model(sagemaker, deployment.model_package_group)
        if approved is None:
            raise OperatorError(f"no approved model in model package group {deployment.model_package_group}",
                                f"train one with `python -m pipeline run{self.flags}`", error="NoApprovedModel")
        package, version, model_data = approved
        key, values, read = online_features(sagemaker, self.session.client("sagemaker-featurestore-runtime"),
                                            deployment.feature_groups, record_id,
                                            f"python -m pipeline scores{self.flags}")
        try:
            artifact = aws_objects.read_object(self.session.client("s3"), model_data)
        except (ClientError, BotoCoreError) as exc:
            failed = explain(exc)
            raise OperatorError(f"model package {package}'s artifact {model_data} cannot be read: {failed.message}",
                                failed.hint, error=failed.error) from None
        return predict_artifact(artifact, package, str(version), read, key, values, features)

    # -- upload -----------------------------------------------------------------------------------
    def upload(self, path: Path, key: str) -> tuple[str, bool | None, bool | None]:
        """Put the file at s3://bucket/key (multipart when large; the bucket's default key encrypts it):
        its URI, whether it replaced an object, whether the bucket starts runs by itself."""
        s3, bucket = self.session.client("s3"), self.deployment.bucket
        replaced = aws_objects.object_exists(s3, bucket, key)
        s3.upload_file(str(path), bucket, key, ExtraArgs={"ContentType": "text/csv"})
        return f"s3://{bucket}/{key}", replaced, aws_objects.raw_trigger_enabled(s3, bucket)


def _gate(execution: Execution, evaluation: dict[str, Any]) -> str:
    if evaluation.get(contract.REASON):
        return str(evaluation[contract.REASON])
    if execution.status == SUCCEEDED:
        return "passed: the model was registered"
    if execution.error == steps.BELOW_THRESHOLD:
        return readable_cause(execution.cause) or "below the threshold"
    return "-"
