"""The ingest phase: per feature group, validate its CSV, write it into the feature group with a Distributed
Map, name whatever failed, and wait until the offline store holds it. Several groups run side by side as
the branches of one Parallel state, after "Derive sources" where the spec derives them from one file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import ArnFormat, Duration, Fn, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from churn import steps
from churn.config import PipelineSettings
from churn.ingest import OfflineStoreTimeout
from churn.layout import FAILED_RECORDS_FILE, INGEST_PREFIX, INGEST_RESULTS, input_prefix
from churn.sql import offline_count_sql
from stacks import nag, retries
from stacks.feature_store import FeatureGroup, FeatureStore
from stacks.offline_store_queries import OfflineStoreQueries
from stacks.phase import Phase
from stacks.pipeline_functions import DERIVE_SOURCES, INGEST_BATCH, SUMMARISE_INGEST, VALIDATE_INPUT, PipelineFunctions

INGEST_MAP_LABEL = "IngestFeatures"
# Distributed Map hands each child at most 256 KiB; stay below it whatever the batch size says.
MAX_BATCH_BYTES = 200_000


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


@dataclass(frozen=True)
class IngestServices:
    """What every group's ingest uses: the functions, the offline-store queries, the settings, and the
    state machine's role (granted the item reader's and result writer's key use)."""

    functions: PipelineFunctions
    queries: OfflineStoreQueries
    settings: PipelineSettings
    role: iam.IRole


class IngestFeatureGroup(Phase):
    """Validate input → Ingest features → Summarise ingest → the offline-store wait loop, for one group.

    `labelled` names the states after the group ("Validate input (activity)"); `failure` None leaves
    errors to the enclosing Parallel state."""

    def __init__(self, scope: Construct, construct_id: str, *, group: FeatureGroup, services: IngestServices,
                 key_path: str, source_prefix: str, labelled: bool, failure: sfn.IChainable | None) -> None:
        super().__init__(scope, construct_id)
        self._group, self._services, self._failure = group, services, failure
        self._label = group.spec.name if labelled else None
        self.map_label = INGEST_MAP_LABEL if self._label is None else f"{INGEST_MAP_LABEL}-{self._label}"
        validate = services.functions.invoke(self, self._step(steps.VALIDATE_INPUT), VALIDATE_INPUT, {
            "bucket": services.queries.store.bucket.bucket_name,
            "key": sfn.JsonPath.string_at(key_path),
            "group": group.spec.name,
            "event_time": sfn.JsonPath.execution_start_time,
            "execution_input": sfn.JsonPath.execution_input,  # its knowledge_cutoff, if any
        }, result_path="$.validation", failure=failure)
        ingest = self._ingest_map(key_path, source_prefix)
        summarise = services.functions.invoke(self, self._step(steps.SUMMARISE_INGEST), SUMMARISE_INGEST, {
            "result_writer": sfn.JsonPath.object_at("$.ingest_results.ResultWriterDetails"),
            "failures_uri": sfn.JsonPath.format(
                f"s3://{services.queries.store.bucket.bucket_name}/"
                f"{INGEST_RESULTS.format(execution='{}', group=group.spec.name)}/{FAILED_RECORDS_FILE}",
                sfn.JsonPath.execution_name),
            "group": group.spec.name,
        }, result_path="$.ingest", failure=failure)
        checked = self._offline_store_wait()
        validate.next(ingest).next(summarise).next(checked.start_state)
        self._bounds(validate, checked.end_states)

    def _step(self, step: str) -> str:
        return steps.for_group(step, self._label)

    def _ingest_map(self, key_path: str, source_prefix: str) -> sfn.DistributedMap:
        """One EXPRESS child per batch of CSV rows; a failed batch never fails the Map (100 % tolerated):
        "Summarise ingest" reads every batch's result and names the failed records."""
        services, group = self._services, self._group
        settings, store = services.settings, services.queries.store
        ingest = sfn.DistributedMap(
            self,
            self._step(steps.INGEST_FEATURES),
            item_reader=ValidatedCsvItemReader(
                bucket=store.bucket, key=sfn.JsonPath.string_at(key_path),
                version_id_path="$.validation.version_id", prefix=source_prefix,
            ),
            # Each row with its position in the file, so a failed record is reported by its line.
            item_selector={"index": sfn.JsonPath.number_at("$$.Map.Item.Index"),
                           "row": sfn.JsonPath.object_at("$$.Map.Item.Value")},
            item_batcher=sfn.ItemBatcher(
                max_items_per_batch=settings.ingest_batch_size,
                max_input_bytes_per_batch=MAX_BATCH_BYTES,
                # BatchInput is passed through as written (no JsonPath rendering), hence the ".$" key.
                batch_input={"event_time.$": "$.validation.event_time", "group": group.spec.name,
                             "feature_group_name": group.name},
            ),
            max_concurrency=settings.ingest_max_concurrency,
            tolerated_failure_percentage=100,
            map_execution_type=sfn.StateMachineType.EXPRESS,
            label=self.map_label,
            result_writer_v2=IngestResultWriter(bucket=store.bucket, group=group.spec.name),
            result_path="$.ingest_results",
        )
        ingest.item_processor(services.functions.invoke(self, self._step(steps.INGEST_BATCH), INGEST_BATCH, {
            "Items": sfn.JsonPath.list_at("$.Items"),
            "BatchInput": sfn.JsonPath.object_at("$.BatchInput"),
        }, result_path="$", failure=None))
        # The item reader decrypts the CSV, the result writer encrypts the results, with the bucket's key.
        store.key.grant(services.role, "kms:Decrypt", "kms:GenerateDataKey")
        store.acknowledge_prefix(services.role, source_prefix,
                                 "The Distributed Map's item reader reads the version of the CSV Validate input read")
        store.acknowledge_prefix(services.role, INGEST_PREFIX, "The Distributed Map writes its results")
        return retries.guard(ingest, None, self._failure)

    def _offline_store_wait(self) -> sfn.Chain:
        """Count this run's records in the group's offline store until all are there (replication lags
        minutes), at most `offline_store_max_checks` times."""
        services, group, failure = self._services, self._group, self._failure
        settings, queries = services.settings, services.queries
        start = sfn.Pass(self, self._step(steps.START_OFFLINE_CHECKS), result=sfn.Result.from_object({"checks": 0}),
                         result_path="$.offline_store")
        count = queries.query(self, self._step(steps.COUNT_OFFLINE_RECORDS),
                              offline_count_sql(group.spec, queries.tables[group.spec.name]),
                              result_path="$.offline_count_query", failure=failure)
        read = queries.first_value(self, self._step(steps.READ_OFFLINE_COUNT), query_path="$.offline_count_query",
                                   result_path="$.offline_count", failure=failure)
        record = sfn.Pass(self, self._step(steps.RECORD_OFFLINE_CHECK), result_path="$.offline_store",
                          parameters={"checks": sfn.JsonPath.math_add(
                              sfn.JsonPath.number_at("$.offline_store.checks"), 1)})
        timed_out = sfn.Fail(self, self._step(steps.OFFLINE_STORE_TIMED_OUT), error=OfflineStoreTimeout.__name__,
                             cause_path=sfn.JsonPath.format(
                                 "offline store had {} of {} records after {} checks",
                                 sfn.JsonPath.string_at("$.offline_count.records"),
                                 sfn.JsonPath.string_at("$.validation.records"),
                                 sfn.JsonPath.string_at("$.offline_store.checks")))
        wait = sfn.Wait(self, self._step(steps.WAIT_FOR_OFFLINE_STORE),
                        time=sfn.WaitTime.duration(Duration.seconds(settings.offline_store_wait_seconds)))
        incomplete = sfn.Condition.number_less_than_json_path("$.offline_count.records", "$.validation.records")
        out_of_checks = sfn.Condition.number_greater_than_equals("$.offline_store.checks",
                                                                  settings.offline_store_max_checks)
        complete = (sfn.Choice(self, self._step(steps.OFFLINE_STORE_COMPLETE))
                    .when(sfn.Condition.and_(incomplete, out_of_checks), timed_out)
                    .when(incomplete, wait))
        wait.next(count)
        start.next(count).next(read).next(record).next(complete)
        # Complete: whatever comes next becomes the Choice's default.
        return sfn.Chain.custom(start, complete.afterwards(include_otherwise=True).end_states, complete)


class IngestPhase(Phase):
    """One group: its fragment, each error caught on the way. Several: [Derive sources →] one Parallel
    state, a branch a group, whose failure (a branch's error and cause) is caught once; its result puts
    the run's values where a single group's "Validate input" puts them ($.validation)."""

    def __init__(self, scope: Construct, construct_id: str, *, feature_store: FeatureStore,
                 services: IngestServices, failure: sfn.IChainable) -> None:
        super().__init__(scope, construct_id)
        spec = feature_store.spec
        source_prefix = input_prefix(bool(spec.derive))
        if spec.is_single_group:
            only = IngestFeatureGroup(self, "Group", group=feature_store.first, services=services,
                                      key_path="$.input_key", source_prefix=source_prefix, labelled=False,
                                      failure=failure)
            self._bounds(only.start_state, only.end_states)
            self._map_labels = [only.map_label]
            return
        parallel = sfn.Parallel(self, steps.INGEST_GROUPS, result_path="$.validation", result_selector={
            name: sfn.JsonPath.string_at(f"$[0].validation.{name}")
            for name in ("event_time", "event_time_sql", "run_started_sql", "knowledge_cutoff_sql")
        })
        self._map_labels = []
        for group in feature_store.groups.values():
            branch = IngestFeatureGroup(
                self, group.spec.name.capitalize(), group=group, services=services,
                key_path=f"$.sources.{group.spec.name}", source_prefix=source_prefix,
                labelled=True, failure=None,
            )
            self._map_labels.append(branch.map_label)
            parallel.branch(branch.next(sfn.Succeed(self, steps.for_group(steps.FEATURE_GROUP_READY,
                                                                          group.spec.name))))
        retries.guard(parallel, None, failure)
        self._bounds(parallel, [parallel])
        if spec.derive:
            derive = services.functions.invoke(self, steps.DERIVE_SOURCES, DERIVE_SOURCES, {
                "bucket": services.queries.store.bucket.bucket_name,
                "key": sfn.JsonPath.string_at("$.input_key"),
                "execution": sfn.JsonPath.execution_name,
            }, result_path="$.sources", failure=failure)
            derive.next(parallel)
            self._bounds(derive, [parallel])

    def acknowledge_map_policy(self, machine: sfn.StateMachine) -> None:
        """The Distributed Maps (aws-cdk-lib) grant the machine rights over its own executions and map runs."""
        policy = machine.node.try_find_child("DistributedMapPolicy")
        if policy is None:
            return
        # Executions are named <state machine name>:<execution>; aws-cdk-lib cuts the name out of the ARN.
        executions = Stack.of(machine).format_arn(
            service="states", resource="execution", arn_format=ArnFormat.COLON_RESOURCE_NAME,
            resource_name=Fn.select(6, Fn.split(":", machine.state_machine_arn)))
        for finding in [f"{executions}:*", *(f"{executions}/{label}:*" for label in self._map_labels)]:
            nag.wildcard_resource(policy, finding, "The Distributed Map (aws-cdk-lib) manages its own child "
                                  "executions")
