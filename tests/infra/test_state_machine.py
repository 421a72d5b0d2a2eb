"""The state machine's definition for one feature group (Telco), read as ASL: names, order, integrations,
SQL, retries and catches. tests/infra/test_several_groups.py reads the one of a spec with several."""

from __future__ import annotations

import json

import pytest

from churn.config import PipelineSettings, training_hyperparameters
from churn.scoring import TRANSFORM_MAX_PAYLOAD_MB
from churn.sql import offline_count_sql, scoring_set_sql, table_reference, training_set_sql
from stacks import retries
from tests.infra.asl_resolver import all_states
from tests.infra.conftest import ROOT

HAPPY_PATH = [
    "Validate input",
    "Ingest features",
    "Summarise ingest",
    "Start offline store checks",
    "Count offline records",
    "Read offline count",
    "Record offline check",
    "Offline store complete?",
    "Build training set",
    "Train model",
    "Evaluate model",
    "Model good enough?",
    "Register model",
    "Build scoring set",
    "Stage scoring input",
    "Create scoring model",
    "Score customers",
    "Delete scoring model",
    "Rank scores",
    "Summarise run",
    "Pipeline succeeded",
]
DEFAULTS = PipelineSettings()
BUCKET = "storagebucket5cb7c8ea"  # the bucket's name as asl_resolver writes its Ref


@pytest.fixture(scope="module")
def definition(main):
    return main.definition


@pytest.fixture(scope="module")
def states(definition):
    return definition["States"]


def next_of(states, name):
    """The next state on the happy path: a Choice's default unless that fails the run."""
    state = states[name]
    if state["Type"] == "Choice":
        default = state["Default"]
        return state["Choices"][0]["Next"] if states[default]["Type"] == "Fail" else default
    return state.get("Next")


def test_happy_path_in_order(definition, states):
    path, name = [], definition["StartAt"]
    while name:
        path.append(name)
        name = next_of(states, name)
    assert path == HAPPY_PATH
    assert states["Pipeline succeeded"]["Type"] == "Succeed"


def test_the_machine_is_standard_logged_and_traced(main):
    _, machine = main.one("AWS::StepFunctions::StateMachine")
    props = machine["Properties"]
    assert props["StateMachineType"] == "STANDARD"
    assert props["TracingConfiguration"] == {"Enabled": True}
    logging = props["LoggingConfiguration"]
    assert logging["Level"] == "ALL" and logging["IncludeExecutionData"] is True
    group_id = logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    group = main.json["Resources"][group_id]["Properties"]
    assert "KmsKeyId" in group and group["RetentionInDays"] == 30
    assert group["LogGroupName"].startswith("/aws/vendedlogs/states/")  # not in the account's resource policy


def test_validate_input_takes_the_key_and_the_execution_input(states, main):
    bucket_id, _ = main.one("AWS::S3::Bucket")
    validate = states["Validate input"]
    assert validate["Parameters"] == {
        "bucket": bucket_id.lower(),
        "key.$": "$.input_key",
        "group": "churn",
        "event_time.$": "$$.Execution.StartTime",
        "execution_input.$": "$$.Execution.Input",  # its optional knowledge_cutoff
    }
    assert validate["ResultPath"] == "$.validation"


def test_ingest_is_a_distributed_map_over_the_csv_in_batches(states, main):
    ingest = states["Ingest features"]
    assert ingest["Type"] == "Map"
    assert ingest["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"}
    reader = ingest["ItemReader"]
    assert reader["Resource"] == "arn:aws:states:::s3:getObject"
    assert reader["ReaderConfig"] == {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"}
    assert reader["Parameters"]["Key.$"] == "$.input_key"
    assert reader["Parameters"]["VersionId.$"] == "$.validation.version_id"  # the version Validate input read
    # each row with its position in the file (ItemSelector runs before the batcher)
    assert ingest["ItemSelector"] == {"index.$": "$$.Map.Item.Index", "row.$": "$$.Map.Item.Value"}
    assert ingest["ItemBatcher"]["MaxItemsPerBatch"] == DEFAULTS.ingest_batch_size
    assert ingest["ItemBatcher"]["MaxInputBytesPerBatch"] <= 256 * 1024
    (group,) = main.resources("AWS::SageMaker::FeatureGroup").values()
    assert ingest["ItemBatcher"]["BatchInput"] == {
        "event_time.$": "$.validation.event_time",
        "group": "churn",
        "feature_group_name": group["Properties"]["FeatureGroupName"],
    }
    assert ingest["MaxConcurrency"] == DEFAULTS.ingest_max_concurrency
    # a failed batch never fails the Map: "Summarise ingest" reads every batch's result and names it
    assert ingest["ToleratedFailurePercentage"] == 100 and "ToleratedFailureCount" not in ingest
    assert ingest["Label"] == "IngestFeatures"
    assert ingest["ResultPath"] == "$.ingest_results"
    batch = ingest["ItemProcessor"]["States"]["Ingest batch"]
    assert batch["Resource"].endswith(":function:functionsingestfunction909f95d1")
    assert batch["Parameters"] == {"Items.$": "$.Items", "BatchInput.$": "$.BatchInput"}
    assert "Catch" not in batch  # a failed batch is a failed child, reported in the Map's results


def test_the_map_writes_its_results_to_s3_for_summarise_ingest(states):
    ingest = states["Ingest features"]
    assert ingest["ResultWriter"] == {
        "Resource": "arn:aws:states:::s3:putObject",
        "Parameters": {"Bucket": BUCKET, "Prefix.$": "States.Format('ingest/{}/churn', $$.Execution.Name)"},
        "WriterConfig": {"OutputType": "JSONL", "Transformation": "NONE"},
    }
    summarise = states["Summarise ingest"]
    assert summarise["Resource"].endswith(":function:functionssummariseingestfunctionab32da0f")
    assert summarise["Parameters"] == {
        "result_writer.$": "$.ingest_results.ResultWriterDetails",
        "failures_uri.$": f"States.Format('s3://{BUCKET}/ingest/{{}}/churn/failed-records.json', $$.Execution.Name)",
        "group": "churn",
    }
    assert summarise["ResultPath"] == "$.ingest"


def test_the_result_writer_may_write_the_ingest_prefix_only_with_the_key(main):
    statements = machine_statements(main)
    writes = [s for s in statements if "s3:PutObject" in actions(s)]
    objects = {json.dumps(r) for s in writes for r in resources(s)}
    assert all("/ingest/*" in r or "/query/*" in r or "/scores/*" in r for r in objects), objects
    assert any("/ingest/*" in r for r in objects)
    assert not any(r.endswith('"/*"]]}') for r in objects)  # not the whole bucket (aws-cdk-lib's grant)
    key_id, _ = main.one("AWS::KMS::Key")
    assert any("kms:GenerateDataKey" in actions(s) and {"Fn::GetAtt": [key_id, "Arn"]} in resources(s)
               for s in statements)


def test_athena_states_may_get_data_access_from_lake_formation(main):
    (grant,) = [s for s in machine_statements(main) if "lakeformation:GetDataAccess" in actions(s)]
    assert grant["Resource"] == "*"


def test_settings_reach_the_definition(variant):
    ingest = variant.definition["States"]["Ingest features"]
    assert ingest["ItemBatcher"]["MaxItemsPerBatch"] == 250


def test_offline_store_loop(states, group):
    count = states["Count offline records"]
    assert count["Resource"] == "arn:aws:states:::athena:startQueryExecution.sync"
    table = table_reference("churn_pipeline_feature_store", f"churn_features_{group.fingerprint()}")
    assert count["Parameters"]["QueryString"] == offline_count_sql(group, table).text
    assert count["Parameters"]["ExecutionParameters.$"] == "States.Array($.validation.event_time_sql)"
    assert count["Parameters"]["WorkGroup"] == "churnpipeline-churn"
    read = states["Read offline count"]
    assert read["Resource"] == "arn:aws:states:::athena:getQueryResults"
    assert read["ResultSelector"] == {"records.$": "States.StringToJson($.ResultSet.Rows[1].Data[0].VarCharValue)"}
    assert states["Record offline check"]["Parameters"] == {"checks.$": "States.MathAdd($.offline_store.checks, 1)"}
    choice = states["Offline store complete?"]
    incomplete = {"Variable": "$.offline_count.records", "NumericLessThanPath": "$.validation.records"}
    assert choice["Choices"] == [
        {"And": [incomplete, {"Variable": "$.offline_store.checks",
                              "NumericGreaterThanEquals": DEFAULTS.offline_store_max_checks}],
         "Next": "Offline store timed out"},
        {**incomplete, "Next": "Wait for offline store"},
    ]
    assert choice["Default"] == "Build training set"
    assert states["Wait for offline store"] == {
        "Type": "Wait",
        "Seconds": DEFAULTS.offline_store_wait_seconds,
        "Next": "Count offline records",
    }
    timeout = states["Offline store timed out"]
    assert timeout["Type"] == "Fail" and timeout["Error"] == "OfflineStoreTimeout"
    assert timeout["CausePath"].startswith("States.Format('offline store had {} of {} records after {} checks'")


def test_training_set_query_is_the_shared_sql(states, spec, group):
    build = states["Build training set"]
    assert build["Resource"] == "arn:aws:states:::athena:startQueryExecution.sync"
    table = table_reference("churn_pipeline_feature_store", f"churn_features_{group.fingerprint()}")
    assert build["Parameters"]["QueryString"] == training_set_sql(spec, {"churn": table}).text
    assert build["Parameters"]["QueryExecutionContext"] == {
        "Catalog": "AwsDataCatalog",
        "Database": "churn_pipeline_feature_store",
    }
    # as of the run's event time, with the knowledge cutoff the execution input may name
    assert build["Parameters"]["ExecutionParameters.$"] == (
        "States.Array($.validation.event_time_sql, $.validation.knowledge_cutoff_sql)"
    )
    assert build["ResultSelector"]["output_uri.$"] == (
        "States.Format('s3://storagebucket5cb7c8ea/query/{}.csv', $.QueryExecution.QueryExecutionId)"
    )


def test_train_model_runs_the_script_in_the_xgboost_container(states, main):
    train = states["Train model"]
    assert train["Resource"] == "arn:aws:states:::sagemaker:createTrainingJob.sync"
    params = train["Parameters"]
    assert params["TrainingJobName.$"] == "$$.Execution.Name"
    assert params["AlgorithmSpecification"]["TrainingImage"] == (
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.2-0"
    )
    (channel,) = params["InputDataConfig"]
    assert channel["ChannelName"] == "train"
    assert channel["ContentType"] == "text/csv"
    assert channel["DataSource"]["S3DataSource"]["S3Uri.$"] == "$.training_set.output_uri"
    assert channel["DataSource"]["S3DataSource"]["S3DataType"] == "S3Prefix"
    assert params["OutputDataConfig"]["S3OutputPath"] == "s3://storagebucket5cb7c8ea/models"
    assert params["OutputDataConfig"]["KmsKeyId"].startswith("arn:aws:kms:")
    assert params["ResourceConfig"] == {
        "InstanceCount": DEFAULTS.training_instance_count,
        "InstanceType": DEFAULTS.training_instance_type,
        "VolumeSizeInGB": DEFAULTS.training_volume_gb,
        "VolumeKmsKeyId": params["OutputDataConfig"]["KmsKeyId"],
    }
    assert params["StoppingCondition"] == {"MaxRuntimeInSeconds": DEFAULTS.training_max_runtime_minutes * 60}
    assert params["EnableNetworkIsolation"] is False
    metrics = {m["Name"]: m["Regex"] for m in params["AlgorithmSpecification"]["MetricDefinitions"]}
    assert set(metrics) == {"validation-auc", "validation-logloss", "train-auc"}
    assert metrics["validation-auc"] == r"validation-auc:([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def test_hyperparameters_are_json_encoded_for_script_mode(states, spec):
    hyperparameters = states["Train model"]["Parameters"]["HyperParameters"]
    assert hyperparameters["sagemaker_program"] == '"train_model.py"'
    submit = hyperparameters["sagemaker_submit_directory"]
    assert submit.startswith('"s3://cdk-hnb659fds-assets-123456789012-us-east-1/') and submit.endswith('.gz"')
    ours = {name: json.loads(value) for name, value in hyperparameters.items() if not name.startswith("sagemaker_")}
    assert ours == training_hyperparameters(DEFAULTS, spec)  # what the local run passes too
    assert ours["id_column"] == spec.record_identifier.name and ours["label_column"] == spec.label.name


def test_quality_gate_and_registration(states, group):
    evaluate = states["Evaluate model"]
    assert evaluate["Parameters"] == {
        "model_artifact.$": "$.training.model_artifact",
        "output_prefix.$": "States.Format('s3://storagebucket5cb7c8ea/models/{}', $.training.training_job_name)",
        "threshold": DEFAULTS.quality_threshold,
    }
    gate = states["Model good enough?"]
    assert gate["Choices"] == [{"Variable": "$.evaluation.passed", "BooleanEquals": True, "Next": "Register model"}]
    below = states[gate["Default"]]
    assert below["Type"] == "Fail" and below["Error"] == "ModelQualityBelowThreshold"
    assert below["CausePath"] == (
        f"States.Format('validation AUC {{}} is below the threshold {DEFAULTS.quality_threshold}', "
        "$.evaluation.validation_auc)"
    )
    register = states["Register model"]
    assert register["Resource"] == "arn:aws:states:::aws-sdk:sagemaker:createModelPackage"
    params = register["Parameters"]
    assert params["ModelPackageGroupName"] == "churnpipeline-churn-models"
    assert params["ModelApprovalStatus"] == "Approved"
    (container,) = params["InferenceSpecification"]["Containers"]
    assert container["Image"] == states["Train model"]["Parameters"]["AlgorithmSpecification"]["TrainingImage"]
    assert container["ModelDataUrl.$"] == "$.training.model_artifact"
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "train_model.py"
    assert container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == (
        states["Train model"]["Parameters"]["HyperParameters"]["sagemaker_submit_directory"].strip('"')
    )
    assert params["InferenceSpecification"]["SupportedContentTypes"] == ["text/csv"]
    assert params["ModelMetrics"]["ModelQuality"]["Statistics"] == {
        "ContentType": "application/json",
        "S3Uri.$": "$.evaluation.evaluation_uri",
    }
    assert params["CustomerMetadataProperties"] == {
        "validation_auc.$": "States.Format('{}', $.evaluation.validation_auc)",
        "training_job_name.$": "$.training.training_job_name",
        "churn_fingerprint": group.fingerprint(),  # each feature group's schema the model was trained on
    }
    assert states["Summarise run"]["Parameters"] == {
        "model_artifact.$": "$.training.model_artifact",
        "validation_auc.$": "$.evaluation.validation_auc",
        "model_package_arn.$": "$.registration.model_package_arn",
        "training_job_name.$": "$.training.training_job_name",
        "execution.$": "$$.Execution.Name",
        "scores_uri.$": "$.scores.scores_uri",
        "customers_scored.$": "$.scores.customers",
        "model_version.$": "$.scores.model_version",
        "top_customers.$": "$.scores.top",
    }


def test_scoring_set_is_the_shared_sql_as_of_now(states, spec, group):
    build = states["Build scoring set"]
    assert build["Resource"] == "arn:aws:states:::athena:startQueryExecution.sync"
    table = table_reference("churn_pipeline_feature_store", f"churn_features_{group.fingerprint()}")
    assert build["Parameters"]["QueryString"] == scoring_set_sql(spec, {"churn": table}).text
    assert build["Parameters"]["WorkGroup"] == states["Build training set"]["Parameters"]["WorkGroup"]
    # As of the moment the state starts, quoted as an Athena string literal.
    assert build["Parameters"]["ExecutionParameters.$"] == (
        "States.Array(States.Format('\\'{}\\'', $$.State.EnteredTime))"
    )
    assert build["ResultPath"] == "$.scoring_set"


def test_scoring_input_is_the_athena_result_alone(states):
    # Batch Transform reads every object under its prefix; Athena's .csv.metadata must not be one.
    stage = states["Stage scoring input"]
    assert stage["Resource"] == "arn:aws:states:::aws-sdk:s3:copyObject"
    assert stage["Parameters"] == {
        "Bucket": "storagebucket5cb7c8ea",
        "CopySource.$": "States.Format('storagebucket5cb7c8ea/query/{}.csv', $.scoring_set.query_execution_id)",
        "Key.$": "States.Format('scores/{}/input/scoring-set.csv', $$.Execution.Name)",
    }
    assert stage["ResultPath"] is None


def test_scoring_model_serves_the_training_script_from_the_same_container(states):
    create = states["Create scoring model"]
    assert create["Resource"] == "arn:aws:states:::sagemaker:createModel"
    params = create["Parameters"]
    assert params["ModelName.$"] == "$$.Execution.Name"
    assert params["ExecutionRoleArn"].startswith("arn:aws:iam::123456789012:role/scoringscoringrole")
    assert params["EnableNetworkIsolation"] is False
    container = params["PrimaryContainer"]
    train = states["Train model"]["Parameters"]
    assert container["Image"] == train["AlgorithmSpecification"]["TrainingImage"]
    assert container["ModelDataUrl.$"] == "$.training.model_artifact"
    # Script mode only with SAGEMAKER_PROGRAM; the code is the training job's bundle.
    (registered,) = states["Register model"]["Parameters"]["InferenceSpecification"]["Containers"]
    assert container["Environment"] == registered["Environment"] == {
        "SAGEMAKER_PROGRAM": "train_model.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": train["HyperParameters"]["sagemaker_submit_directory"].strip('"'),
        "SAGEMAKER_REGION": "us-east-1",
    }


def test_the_scoring_model_is_deleted_once_the_transform_has_ended(states):
    """Executions leave no SageMaker models behind (cdk destroy cannot see them): the model is deleted
    after the transform, and after a failed transform before the failure path."""
    assert states["Score customers"]["Next"] == "Delete scoring model"
    (caught,) = states["Score customers"]["Catch"]
    assert caught == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure",
                      "Next": "Delete scoring model after failure"}
    for name, after in (("Delete scoring model", "Rank scores"),
                        ("Delete scoring model after failure", "Record failure")):
        delete = states[name]
        assert delete["Resource"] == "arn:aws:states:::aws-sdk:sagemaker:deleteModel"
        assert delete["Parameters"] == {"ModelName.$": "$$.Execution.Name"}
        assert delete["Next"] == after and delete["ResultPath"] is None
    (cleanup_failed,) = states["Delete scoring model after failure"]["Catch"]
    assert cleanup_failed["Next"] == "Record failure" and cleanup_failed["ResultPath"] == "$.cleanup_failure"


def test_score_customers_is_a_batch_transform_of_the_scoring_set(states):
    transform = states["Score customers"]
    assert transform["Resource"] == "arn:aws:states:::sagemaker:createTransformJob.sync"
    params = transform["Parameters"]
    assert params["TransformJobName.$"] == params["ModelName.$"] == "$$.Execution.Name"
    assert params["TransformInput"] == {
        "ContentType": "text/csv",
        "DataSource": {"S3DataSource": {
            "S3Uri.$": "States.Format('s3://storagebucket5cb7c8ea/scores/{}/input/', $$.Execution.Name)",
            "S3DataType": "S3Prefix",
        }},
        "SplitType": "Line",  # requests of whole lines: the header only in the first, predict_fn reads the rest
    }
    output = params["TransformOutput"]
    assert output["S3OutputPath.$"] == (
        "States.Format('s3://storagebucket5cb7c8ea/scores/{}/transform/', $$.Execution.Name)"
    )
    assert output["Accept"] == "text/csv" and output["AssembleWith"] == "Line"
    key = states["Train model"]["Parameters"]["OutputDataConfig"]["KmsKeyId"]
    assert output["KmsKeyId"] == params["TransformResources"]["VolumeKmsKeyId"] == key
    assert params["TransformResources"]["InstanceType"] == DEFAULTS.scoring_instance_type
    # as many lines as fit in 5 MiB a request (the model server itself sets no limit in script mode)
    assert params["BatchStrategy"] == "MultiRecord"
    assert params["MaxPayloadInMB"] == TRANSFORM_MAX_PAYLOAD_MB == 5
    assert params["MaxConcurrentTransforms"] == 1
    assert params["ModelClientConfig"] == {"InvocationsMaxRetries": 1, "InvocationsTimeoutInSeconds": 600}
    assert params["Environment"] == {"SAGEMAKER_MODEL_SERVER_TIMEOUT": "600"}
    assert transform["ResultPath"] == "$.scoring"


def test_rank_scores_writes_the_runs_scores_csv(states):
    rank = states["Rank scores"]
    assert rank["Resource"].endswith(":function:functionsrankscoresfunctiond968b045")
    assert rank["Parameters"] == {
        "transform_output.$": "States.Format('s3://storagebucket5cb7c8ea/scores/{}/transform/', $$.Execution.Name)",
        "scores_uri.$": "States.Format('s3://storagebucket5cb7c8ea/scores/{}/scores.csv', $$.Execution.Name)",
        "model_package_arn.$": "$.registration.model_package_arn",
    }
    assert rank["ResultPath"] == "$.scores"


def test_scoring_role_reads_models_and_scores_writes_scores_only(main):
    role_id = next(k for k in main.resources("AWS::IAM::Role") if k.startswith("ScoringScoringRole"))
    role = main.json["Resources"][role_id]
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "sagemaker.amazonaws.com"
    }
    assert "ManagedPolicyArns" not in role["Properties"]
    statements = [
        s
        for p in main.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    by_action: dict[str, set[str]] = {}
    for s in statements:
        for action in [s["Action"]] if isinstance(s["Action"], str) else s["Action"]:
            resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
            by_action.setdefault(action, set()).update(json.dumps(r) for r in resources)
    gets = by_action["s3:GetObject"]
    assert len(gets) == 3 and any("/models/*" in r for r in gets) and any("/scores/*" in r for r in gets)
    assert any(".gz" in r for r in gets)  # the script bundle, exactly
    (put,) = by_action["s3:PutObject"]
    assert "/scores/*" in put
    assert "kms:CreateGrant" in by_action


def test_state_machine_may_pass_only_its_job_roles(main):
    passes = [s for s in machine_statements(main) if s["Action"] == "iam:PassRole"]
    roles = {r["Fn::GetAtt"][0] for s in passes for r in resources(s)}
    assert {r.split("Role")[0] for r in roles} == {"TrainingTraining", "ScoringScoring"}
    assert all(s["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}} for s in passes)


def retried_errors(task: dict) -> set[str]:
    return {e for r in task["Retry"] for e in r["ErrorEquals"]}


def test_every_task_retries_only_transient_errors_by_integration(states):
    tasks = {name: s for name, s in all_states(states).items() if s["Type"] == "Task"}
    # validate, ingest batch, summarise, count, read, build, train, evaluate, register, build scoring set,
    # stage scoring input, create scoring model, score customers, rank scores, and the scoring model's
    # deletion after the transform and after a failed one
    assert len(tasks) == 16
    expected = {
        "arn:aws:lambda:": retries.LAMBDA_ERRORS,
        "arn:aws:states:::sagemaker:": retries.SAGEMAKER_JOB_ERRORS,
        "arn:aws:states:::aws-sdk:sagemaker:": retries.SAGEMAKER_SDK_ERRORS,
        "arn:aws:states:::aws-sdk:s3:": retries.S3_SDK_ERRORS,
        "arn:aws:states:::athena:": retries.ATHENA_ERRORS,
    }
    for name, task in tasks.items():
        (prefix,) = [p for p in expected if task["Resource"].startswith(p)]
        assert retried_errors(task) == set(expected[prefix]), name
        for rule in task["Retry"]:
            assert rule["BackoffRate"] == 2 and rule["JitterStrategy"] == "FULL", name
    generic = {"States.ALL", "States.Timeout", "States.TaskFailed", "SageMaker.AmazonSageMakerException",
               "Lambda.Unknown"}
    assert not set().union(*(retried_errors(t) for t in tasks.values())) & generic
    # AWS's recommendation for Lambda's service errors: 2 s, 6 attempts, backoff x2
    assert states["Validate input"]["Retry"][0]["IntervalSeconds"] == 2
    assert states["Validate input"]["Retry"][0]["MaxAttempts"] == 6


def test_every_error_goes_through_one_failure_path(states):
    top_level = [name for name, s in states.items() if s["Type"] in ("Task", "Map")]
    # A failed transform reaches "Record failure" through the deletion of its model, which keeps the
    # transform's error in $.failure (and its own, if it fails too, in $.cleanup_failure).
    detours = {
        "Score customers": {"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure",
                            "Next": "Delete scoring model after failure"},
        "Delete scoring model after failure": {"ErrorEquals": ["States.ALL"], "ResultPath": "$.cleanup_failure",
                                               "Next": "Record failure"},
    }
    for name in top_level:
        (catch,) = states[name]["Catch"]
        expected = {"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Record failure"}
        assert catch == detours.get(name, expected), name
    assert states["Record failure"]["Type"] == "Pass"
    assert states["Record failure"]["Parameters"] == {"execution.$": "$$.Execution.Name", "failure.$": "$.failure"}
    assert states["Record failure"]["Next"] == "Pipeline failed"
    assert states["Pipeline failed"] == {"Type": "Fail", "ErrorPath": "$.failure.Error", "CausePath": "$.failure.Cause"}


def actions(statement: dict) -> list[str]:
    return [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]


def resources(statement: dict) -> list:
    return statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]


def machine_statements(synthesized) -> list[dict]:
    """Every statement of the state machine role's policies."""
    _, machine = synthesized.one("AWS::StepFunctions::StateMachine")
    role = {"Ref": machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]}
    return [s for p in synthesized.resources("AWS::IAM::Policy").values() if role in p["Properties"]["Roles"]
            for s in p["Properties"]["PolicyDocument"]["Statement"]]


def _targets(state: dict) -> list[str]:
    targets = [state.get("Next"), state.get("Default")]
    targets += [choice["Next"] for choice in state.get("Choices", [])]
    targets += [catch["Next"] for catch in state.get("Catch", [])]
    return [t for t in targets if t]


def _check_graph(scope: dict) -> None:
    """Every transition lands on a state of the same scope, and every state is reachable."""
    states = scope["States"]
    reachable, todo = set(), [scope["StartAt"]]
    while todo:
        name = todo.pop()
        if name in reachable:
            continue
        assert name in states, f"transition to unknown state {name!r}"
        reachable.add(name)
        state = states[name]
        terminal = state["Type"] in ("Succeed", "Fail") or state.get("End") is True
        assert terminal or _targets(state), f"{name!r} neither ends nor moves on"
        todo.extend(_targets(state))
        if "ItemProcessor" in state:
            _check_graph(state["ItemProcessor"])
        for branch in state.get("Branches", []):
            _check_graph(branch)
    assert reachable == set(states), f"unreachable: {sorted(set(states) - reachable)}"


@pytest.mark.parametrize("name", ["main", "cdnow"])
def test_every_transition_is_valid_and_every_state_reachable(request, name):
    _check_graph(request.getfixturevalue(name).definition)


def test_rank_scores_function_reads_and_writes_scores_only(main):
    (function,) = [
        f for f in main.resources("AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == "churn.handlers.rank_scores.handler"
    ]
    role = {"Ref": function["Properties"]["Role"]["Fn::GetAtt"][0]}
    statements = [
        s
        for p in main.resources("AWS::IAM::Policy").values()
        if role in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    objects = {
        json.dumps(s["Resource"])
        for s in statements
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        if a in ("s3:GetObject", "s3:PutObject")
    }
    assert objects and all("/scores/*" in r for r in objects)
    assert function["Properties"]["Timeout"] == 300


def test_the_validated_csv_reader_adds_the_version_to_jsonpath_states_only():
    from aws_cdk import App, Stack
    from aws_cdk import aws_s3 as s3
    from aws_cdk import aws_stepfunctions as sfn

    from stacks.ingest import ValidatedCsvItemReader

    bucket = s3.Bucket(Stack(App(), "ReaderTest"), "Bucket")
    reader = ValidatedCsvItemReader(bucket=bucket, key="raw/x.csv", version_id_path="$.v", prefix="raw")
    rendered = reader.render(sfn.QueryLanguage.JSON_PATH)
    assert rendered["Parameters"]["VersionId.$"] == "$.v" and rendered["Parameters"]["Key"] == "raw/x.csv"
    assert rendered["ReaderConfig"] == {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"}
    (grant,) = reader.provide_policy_statements()
    assert sorted(grant.actions) == ["s3:GetObject", "s3:GetObjectVersion"]
    with pytest.raises(ValueError, match="JSONPath states only"):
        reader.render(sfn.QueryLanguage.JSONATA)


def test_the_readme_names_every_assumed_error_name_as_not_verified():
    readme = (ROOT / "README.md").read_text()
    not_verified = readme[readme.index("## What was not verified on AWS"):]
    missing = [name for name in retries.ASSUMED_ERRORS if f"`{name}`" not in not_verified]
    assert missing == []
