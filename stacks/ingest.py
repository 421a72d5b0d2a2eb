"""The ingest phase: per feature group, validate its CSV, write it into the feature group with a Distributed
Map, name whatever failed, and wait until the offline store holds it. Several groups run side by side as
the branches of one Parallel state, after "Derive sources" where the spec derives them from one file."""

from __future__ import annotations

from functools import partial
from typing import Any

from aws_cdk import Arn, ArnFormat, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from churn import contract, steps
from churn.config import PipelineSettings
from churn.layout import FAILED_RECORDS_FILE, INGEST_PREFIX, INGEST_RESULTS, input_prefix
from churn.sql import offline_count_sql
from stacks import nag, retries
from stacks.feature_store import FeatureGroup, FeatureStore
from stacks.offline_store_queries import OfflineStoreQueries
from stacks.phase import Phase
from stacks.pipeline_functions import (
    DERIVE_SOURCES_FUNCTION,
    INGEST_BATCH_FUNCTION,
    SUMMARISE_INGEST_FUNCTION,
    VALIDATE_INPUT_FUNCTION,
    PipelineFunctions,
)

INGEST_MAP_LABEL = "IngestFeatures"
# Distributed Map hands each child at most 256 KiB; stay below it whatever the batch size says.
MAX_BATCH_BYTES = 200_000
# Where a group's states keep their own working results ($.<name>; nothing outside this phase reads them):
# the Distributed Map's (its ResultWriterDetails, AWS's key, say where the batches' results are), the
# offline-store count query's, and the wait loop's {OFFLINE_CHECKS: counts made so far}.
INGEST_MAP_RESULT = "ingest_results"
OFFLINE_COUNT_QUERY = "offline_count_query"
OFFLINE_WAIT = "offline_store"
OFFLINE_CHECKS = "checks"
OFFLINE_CHECKS_PATH = contract.path(OFFLINE_WAIT, OFFLINE_CHECKS)


class ValidatedCsvItemReader(sfn.S3CsvItemReader):
    """The Distributed Map's CSV item reader (header row), reading the object *version* that
    "Validate input" read: an upload to the same key in between (the bucket is versioned) cannot
    slip rows past validation. Its read grant is the object versions under `prefix`/ only, where
    Validate input may read."""

    def __init__(self, *, bucket: s3.IBucket, key: str, version_id_path: str, prefix: str):
        super().__init__(bucket=bucket, key=key, csv_headers=sfn.CsvHeaders.use_first_row())
        self._version_id_path = version_id_path
        self._objects = bucket.arn_for_objects(f"{prefix}/*")

    def render(self, query_language: sfn.QueryLanguage | None = None) -> Any:
        rendered = super().render(query_language)
        if "Parameters" not in rendered:
            raise ValueError("ValidatedCsvItemReader renders JSONPath states only (its version id is a JSONPath)")
        rendered["Parameters"]["VersionId.$"] = self._version_id_path
        return rendered

    def provide_policy_statements(self) -> list[iam.PolicyStatement]:
        return [iam.PolicyStatement(actions=["s3:GetObject", "s3:GetObjectVersion"], resources=[self._objects])]


class IngestResultWriter(sfn.ResultWriterV2):
    """Each batch's child execution, unchanged, as JSON Lines under ingest/<execution>/<group>/ (what
    "Summarise ingest" reads). Its S3 grant is that prefix only (aws-cdk-lib's covers the whole bucket)."""

    def __init__(self, *, bucket: s3.IBucket, group: str):
        super().__init__(
            bucket=bucket,
            prefix=sfn.JsonPath.format(INGEST_RESULTS.format(execution="{}", group=group),
                                       sfn.JsonPath.execution_name),
            writer_config=sfn.WriterConfig(output_type=sfn.OutputType.JSONL, transformation=sfn.Transformation.NONE),
        )
        self._objects = bucket.arn_for_objects(f"{INGEST_PREFIX}/*")

    def provide_policy_statements(self) -> list[iam.PolicyStatement]:
        # The least-privilege policy of the ResultWriter documentation, on the prefix.
        actions = ["s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"]
        return [iam.PolicyStatement(actions=actions, resources=[self._objects])]


class IngestPhase(Phase):
    """Per feature group: Validate input → Ingest features → Summarise ingest → the offline-store wait loop.

    One group: that chain, each error caught on the way. Several: [Derive sources →] one Parallel state, a
    branch a group (its states named after it: "Validate input (activity)"), whose failure (a branch's error
    and cause) is caught once; its result puts the run's values where a single group's "Validate input"
    puts them ($.validation)."""

    def __init__(self, scope: Construct, construct_id: str, *, feature_store: FeatureStore,
                 functions: PipelineFunctions, queries: OfflineStoreQueries, settings: PipelineSettings,
                 role: iam.IRole, failure: sfn.IChainable) -> None:
        super().__init__(scope, construct_id)
        self.functions, self.queries, self.settings, self.store = functions, queries, settings, queries.store
        spec = feature_store.spec
        self.source_prefix = input_prefix(bool(spec.derive))
        # The item reader decrypts the CSV, the result writer encrypts the results, with the bucket's key.
        self.store.key.grant(role, "kms:Decrypt", "kms:GenerateDataKey")
        self.store.acknowledge_prefix(role, self.source_prefix, "The Distributed Map's item reader reads the "
                                      "version of the CSV Validate input read")
        self.store.acknowledge_prefix(role, INGEST_PREFIX, "The Distributed Map writes its results")
        self.map_labels: list[str] = []
        if spec.is_single_group:
            only = self._group(feature_store.first, contract.path(contract.INPUT_KEY), None, failure)
            self._bounds(only.start_state, only.end_states)
            return
        parallel = sfn.Parallel(self, steps.INGEST_GROUPS, result_path=contract.path(contract.VALIDATION),
                                result_selector={
                                    name: sfn.JsonPath.string_at(f"$[0].{contract.VALIDATION}.{name}")
                                    for name in contract.RUN_VALUE_KEYS
                                })
        for name, group in feature_store.groups.items():
            branch = self._group(group, contract.path(contract.SOURCES, name), name, None)
            parallel.branch(branch.next(sfn.Succeed(self, steps.for_group(steps.FEATURE_GROUP_READY, name))))
        retries.guard(parallel, None, failure)
        self._bounds(parallel, [parallel])
        if spec.derive:
            derive = functions.invoke(self, steps.DERIVE_SOURCES, DERIVE_SOURCES_FUNCTION, {
                contract.BUCKET: self.store.bucket.bucket_name,
                contract.OBJECT_KEY: sfn.JsonPath.string_at(contract.path(contract.INPUT_KEY)),
                contract.EXECUTION: sfn.JsonPath.execution_name,
            }, result_path=contract.path(contract.SOURCES), failure=failure)
            derive.next(parallel)
            self._bounds(derive, [parallel])

    def _group(self, group: FeatureGroup, key_path: str, label: str | None,
               failure: sfn.IChainable | None) -> sfn.Chain:
        """One group's states, named after `label` where it is given; `failure` None leaves errors to the
        enclosing Parallel state."""
        bucket, step = self.store.bucket, partial(steps.for_group, group=label)
        validate = self.functions.invoke(self, step(steps.VALIDATE_INPUT), VALIDATE_INPUT_FUNCTION, {
            contract.BUCKET: bucket.bucket_name,
            contract.OBJECT_KEY: sfn.JsonPath.string_at(key_path),
            contract.GROUP: group.spec.name,
            contract.EVENT_TIME: sfn.JsonPath.execution_start_time,
            contract.EXECUTION_INPUT: sfn.JsonPath.execution_input,  # its knowledge_cutoff, if any
        }, result_path=contract.path(contract.VALIDATION), failure=failure)
        ingest = self._ingest_map(group, key_path, label, failure)
        summarise = self.functions.invoke(self, step(steps.SUMMARISE_INGEST), SUMMARISE_INGEST_FUNCTION, {
            contract.RESULT_WRITER: sfn.JsonPath.object_at(contract.path(INGEST_MAP_RESULT, "ResultWriterDetails")),
            contract.FAILURES_URI: sfn.JsonPath.format(
                f"s3://{bucket.bucket_name}/"
                f"{INGEST_RESULTS.format(execution='{}', group=group.spec.name)}/{FAILED_RECORDS_FILE}",
                sfn.JsonPath.execution_name),
            contract.GROUP: group.spec.name,
        }, result_path=contract.path(contract.INGEST), failure=failure)
        return validate.next(ingest).next(summarise).next(self._offline_store_wait(group, label, failure))

    def _ingest_map(self, group: FeatureGroup, key_path: str, label: str | None,
                    failure: sfn.IChainable | None) -> sfn.DistributedMap:
        """One EXPRESS child per batch of CSV rows; a failed batch never fails the Map (100 % tolerated):
        "Summarise ingest" reads every batch's result and names the failed records."""
        settings, bucket, step = self.settings, self.store.bucket, partial(steps.for_group, group=label)
        map_label = INGEST_MAP_LABEL if label is None else f"{INGEST_MAP_LABEL}-{label}"
        self.map_labels.append(map_label)
        ingest = sfn.DistributedMap(
            self,
            step(steps.INGEST_FEATURES),
            item_reader=ValidatedCsvItemReader(
                bucket=bucket, key=sfn.JsonPath.string_at(key_path),
                version_id_path=contract.path(contract.VALIDATION, contract.VERSION_ID), prefix=self.source_prefix,
            ),
            # Each row with its position in the file, so a failed record is reported by its line.
            item_selector={contract.ITEM_INDEX: sfn.JsonPath.number_at("$$.Map.Item.Index"),
                           contract.ITEM_ROW: sfn.JsonPath.object_at("$$.Map.Item.Value")},
            item_batcher=sfn.ItemBatcher(
                max_items_per_batch=settings.ingest_batch_size,
                max_input_bytes_per_batch=MAX_BATCH_BYTES,
                # BatchInput is passed through as written (no JsonPath rendering), hence the ".$" key.
                batch_input={f"{contract.EVENT_TIME}.$": contract.path(contract.VALIDATION, contract.EVENT_TIME),
                             contract.GROUP: group.spec.name, contract.FEATURE_GROUP_NAME: group.name},
            ),
            max_concurrency=settings.ingest_max_concurrency,
            tolerated_failure_percentage=100,
            map_execution_type=sfn.StateMachineType.EXPRESS,
            label=map_label,
            result_writer_v2=IngestResultWriter(bucket=bucket, group=group.spec.name),
            result_path=contract.path(INGEST_MAP_RESULT),
        )
        ingest.item_processor(self.functions.invoke(self, step(steps.INGEST_BATCH), INGEST_BATCH_FUNCTION, {
            "Items": sfn.JsonPath.list_at("$.Items"),
            "BatchInput": sfn.JsonPath.object_at("$.BatchInput"),
        }, result_path="$", failure=None))
        return retries.guard(ingest, None, failure)

    def _offline_store_wait(self, group: FeatureGroup, label: str | None, failure: sfn.IChainable | None) -> sfn.Chain:
        """Count this run's records in the group's offline store until all are there (replication lags
        minutes), at most `offline_store_max_checks` times."""
        settings, queries, step = self.settings, self.queries, partial(steps.for_group, group=label)
        wait_path, query_path = contract.path(OFFLINE_WAIT), contract.path(OFFLINE_COUNT_QUERY)
        start = sfn.Pass(self, step(steps.START_OFFLINE_CHECKS), result=sfn.Result.from_object({OFFLINE_CHECKS: 0}),
                         result_path=wait_path)
        count = queries.query(self, step(steps.COUNT_OFFLINE_RECORDS),
                              offline_count_sql(group.spec, queries.tables[group.spec.name]),
                              result_path=query_path, failure=failure)
        read = queries.first_value(self, step(steps.READ_OFFLINE_COUNT), query_path=query_path,
                                   result_path=contract.path(contract.OFFLINE_COUNT), failure=failure)
        record = sfn.Pass(self, step(steps.RECORD_OFFLINE_CHECK), result_path=wait_path,
                          parameters={OFFLINE_CHECKS: sfn.JsonPath.math_add(
                              sfn.JsonPath.number_at(OFFLINE_CHECKS_PATH), 1)})
        timed_out = sfn.Fail(self, step(steps.OFFLINE_STORE_TIMED_OUT), error=steps.OFFLINE_STORE_TIMEOUT,
                             cause_path=sfn.JsonPath.format(
                                 "offline store had {} of {} records after {} checks",
                                 sfn.JsonPath.string_at(contract.path(contract.OFFLINE_COUNT, contract.RECORDS)),
                                 sfn.JsonPath.string_at(contract.path(contract.VALIDATION, contract.RECORDS)),
                                 sfn.JsonPath.string_at(OFFLINE_CHECKS_PATH)))
        wait = sfn.Wait(self, step(steps.WAIT_FOR_OFFLINE_STORE),
                        time=sfn.WaitTime.duration(Duration.seconds(settings.offline_store_wait_seconds)))
        incomplete = sfn.Condition.number_less_than_json_path(contract.path(contract.OFFLINE_COUNT, contract.RECORDS),
                                                                contract.path(contract.VALIDATION, contract.RECORDS))
        out_of_checks = sfn.Condition.number_greater_than_equals(OFFLINE_CHECKS_PATH, settings.offline_store_max_checks)
        complete = (sfn.Choice(self, step(steps.OFFLINE_STORE_COMPLETE))
                    .when(sfn.Condition.and_(incomplete, out_of_checks), timed_out)
                    .when(incomplete, wait))
        wait.next(count)
        start.next(count).next(read).next(record).next(complete)
        # Complete: whatever comes next becomes the Choice's default.
        return sfn.Chain.custom(start, complete.afterwards(include_otherwise=True).end_states, complete)

    def acknowledge_map_policy(self, machine: sfn.StateMachine) -> None:
        """The Distributed Maps (aws-cdk-lib) grant the machine rights over its own executions and map runs."""
        policy = machine.node.find_child("DistributedMapPolicy")  # every group has its Distributed Map
        # Executions are named <state machine name>:<execution>; the name is cut out of the ARN as aws-cdk-lib does.
        executions = Stack.of(machine).format_arn(
            service="states", resource="execution", arn_format=ArnFormat.COLON_RESOURCE_NAME,
            resource_name=Arn.split(machine.state_machine_arn, ArnFormat.COLON_RESOURCE_NAME).resource_name)
        for finding in [f"{executions}:*", *(f"{executions}/{label}:*" for label in self.map_labels)]:
            nag.wildcard_resource(policy, finding, "The Distributed Map (aws-cdk-lib) manages its own child "
                                  "executions")
