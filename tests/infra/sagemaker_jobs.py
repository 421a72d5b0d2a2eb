"""SageMaker training and Batch Transform as jobs of the moto harness, run on this machine.

- `SageMakerTraining`: CreateTrainingJob in the XGBoost container's script mode. The code bundle comes
  from the cloud assembly (`sagemaker_submit_directory`), the channels from moto S3, and the script runs
  through `pipeline.local_aws.training_job` (the container's environment contract and arguments, as the
  local run does). What the container's toolkit (sagemaker-containers 2.8.6, as its source reads) does
  around the script is imitated: when the script fails it overwrites `/opt/ml/output/failure` with
  `ExecuteUserScriptError:\\nCommand "<the command>"` (whatever the script wrote there), so the job's
  FailureReason, `AlgorithmError: ` and that file cut to DescribeTrainingJob's 1024 characters, never
  carries the script's own message; that message is in the job's log. The log (the toolkit's lines and
  the script's output, a line an event) goes to moto CloudWatch Logs where SageMaker writes it: group
  `/aws/sagemaker/TrainingJobs`, stream `<job name>/algo-1-<epoch seconds>`.
- `SageMakerTransform`: CreateTransformJob with the model's own serving functions
  (`model_fn`/`input_fn`/`predict_fn`/`output_fn`) in a subprocess, writing `<input name>.out`.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.local_aws.batch_transform import PayloadTooLarge, assemble_lines, mini_batches
from pipeline.local_aws.training_job import pack_model, run_training
from tests.infra.athena_on_duckdb import split_s3_uri
from tests.infra.sync_jobs import JobOutcome

TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
FAILURE_REASON_MAX = 1024  # DescribeTrainingJob's FailureReason
TOOLKIT_LOGGER = "sagemaker-containers"
_LOG_EVENTS_PER_CALL = 1000


def toolkit_line(level: str, message: str) -> str:
    """A line of the toolkit's logger: "%(asctime)s %(name)-12s %(levelname)-8s %(message)s"."""
    now = datetime.now(UTC)
    return f"{now:%Y-%m-%d %H:%M:%S},{now.microsecond // 1000:03d} {TOOLKIT_LOGGER:<12} {level:<8} {message}"


def toolkit_failure(command: list[str]) -> str:
    """str(ExecuteUserScriptError) for a script run without capture_error (sagemaker-containers 2.8.6)."""
    return f'ExecuteUserScriptError:\nCommand "{" ".join(command)}"'


def final_metrics(definitions: list[dict[str, str]], log: str) -> list[dict[str, Any]]:
    """The last value each metric definition's regex finds in the job's log, as SageMaker reports them."""
    found = []
    for definition in definitions:
        values = re.findall(definition["Regex"], log)
        if values:
            found.append({"MetricName": definition["Name"], "Value": float(values[-1]),
                          "Timestamp": int(time.time() * 1000)})
    return found


class SageMakerTraining:
    """CreateTrainingJob as a job: the bundled script, run as the XGBoost container runs it."""

    def __init__(self, timeout_seconds: int = 300) -> None:
        self.timeout_seconds = timeout_seconds
        self.jobs: list[dict[str, Any]] = []

    def __call__(self, host: Any, request: dict[str, Any], started: dict[str, Any]) -> JobOutcome:
        name = request["TrainingJobName"]
        root = host.workdir / "training-jobs" / name
        hyperparameters = {k: json.loads(v) for k, v in request.get("HyperParameters", {}).items()}
        code = host.code_bundle(hyperparameters["sagemaker_submit_directory"], root / "code")
        channels = []
        for channel in request["InputDataConfig"]:
            source = channel["DataSource"]["S3DataSource"]
            host.download_prefix(source["S3Uri"], root / "input" / "data" / channel["ChannelName"],
                                 exact=source["S3DataType"] == "ManifestFile")
            channels.append(channel["ChannelName"])
        user = {k: v for k, v in hyperparameters.items() if not k.startswith("sagemaker_")}
        limit = min(self.timeout_seconds, request.get("StoppingCondition", {}).get("MaxRuntimeInSeconds", 86400))
        stream = f"{name}/algo-1-{int(time.time())}"
        run = run_training(code, hyperparameters["sagemaker_program"], root, user, channels=tuple(channels),
                           timeout=limit)
        script_output = run.log.read_text(encoding="utf-8")
        log = [toolkit_line("INFO", "Invoking user script"), "Invoking script with the following command:",
               " ".join(run.command), *script_output.splitlines()]
        record = {"name": name, "returncode": run.returncode, "log": script_output, "log_stream": stream}
        self.jobs.append(record)
        metric_definitions = request["AlgorithmSpecification"].get("MetricDefinitions", [])
        algorithm = {"AlgorithmSpecification": {"MetricDefinitions": metric_definitions}}
        if run.returncode is None:
            record["status"] = "Stopped"
            write_log(host, stream, log)
            return JobOutcome(False, {"TrainingJobStatus": "Stopped", "SecondaryStatus": "MaxRuntimeExceeded",
                                      **algorithm})
        if not run.succeeded:
            failure = toolkit_failure(run.command)
            (root / "output" / "failure").write_text(failure, encoding="utf-8")  # "w": the script's is gone
            log += [toolkit_line("ERROR", failure.splitlines()[0]), *failure.splitlines()[1:]]
            write_log(host, stream, log)
            record["status"] = "Failed"
            reason = f"AlgorithmError: {(root / 'output' / 'failure').read_text(encoding='utf-8')}"
            return JobOutcome(False, {"TrainingJobStatus": "Failed", "SecondaryStatus": "Failed",
                                      "FailureReason": reason[:FAILURE_REASON_MAX], **algorithm})
        write_log(host, stream, [*log, toolkit_line("INFO", "Reporting training SUCCESS")])
        artifact = f"{request['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{name}/output/model.tar.gz"
        bucket, key = split_s3_uri(artifact)
        host.client("s3").put_object(Bucket=bucket, Key=key,
                                     Body=pack_model(root, root / "model.tar.gz").read_bytes())
        record.update(status="Completed", artifact=artifact)
        return JobOutcome(True, {
            "TrainingJobStatus": "Completed",
            "SecondaryStatus": "Completed",
            "ModelArtifacts": {"S3ModelArtifacts": artifact},
            "FinalMetricDataList": final_metrics(metric_definitions, script_output),
            **algorithm,
        })


def write_log(host: Any, stream: str, lines: list[str]) -> None:
    """The job's output in CloudWatch Logs as SageMaker writes it: a line an event (empty lines are none)."""
    logs = host.client("logs")
    try:
        logs.create_log_group(logGroupName=TRAINING_LOG_GROUP)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    logs.create_log_stream(logGroupName=TRAINING_LOG_GROUP, logStreamName=stream)
    now = int(time.time() * 1000)
    events = [{"timestamp": now, "message": line} for line in lines if line.strip()]
    for start in range(0, len(events), _LOG_EVENTS_PER_CALL):
        logs.put_log_events(logGroupName=TRAINING_LOG_GROUP, logStreamName=stream,
                            logEvents=events[start:start + _LOG_EVENTS_PER_CALL])


SERVING_DRIVER = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
module = __import__(sys.argv[2])
model = module.model_fn(sys.argv[3])
for item in json.loads(Path(sys.argv[4]).read_text()):
    body = Path(item["input"]).read_bytes()
    if item["content_type"] == "text/csv":  # the container decodes a text/csv body for input_fn
        body = body.decode("utf-8")
    prediction = module.predict_fn(module.input_fn(body, item["content_type"]), model)
    result = module.output_fn(prediction, item["accept"])
    # Only a (body, content type) tuple gets a typed response; a bare body is answered as text/html.
    body, _ = result if isinstance(result, tuple) else (result, "text/html")
    Path(item["output"]).write_bytes(body.encode() if isinstance(body, str) else bytes(body))
"""


def _split_records(body: bytes, split: str, max_payload_mb: int, source: str) -> list[bytes]:
    """SplitType=Line cuts the object into mini-batches of whole lines (a header is just a line), as
    the local pipeline does (pipeline.local_aws.batch_transform); SplitType=None sends it whole."""
    if split != "Line":
        return [body]
    return list(mini_batches(io.BytesIO(body), max_payload_mb * 2**20, source))


class SageMakerTransform:
    """CreateTransformJob as a job: the model's serving functions over each input object."""

    def __init__(self, timeout_seconds: int = 300) -> None:
        self.timeout_seconds = timeout_seconds
        self.jobs: list[dict[str, Any]] = []

    def _plan(self, root: Path, request: dict[str, Any], inputs: list[tuple[str, Path]]) -> list[dict[str, Any]]:
        """Each input object's requests (raises PayloadTooLarge for a line over MaxPayloadInMB)."""
        content_type = request["TransformInput"].get("ContentType", "text/csv")
        split = request["TransformInput"].get("SplitType", "None")
        accept = request["TransformOutput"].get("Accept", content_type)
        work = []
        for relative, path in inputs:
            for index, chunk in enumerate(_split_records(path.read_bytes(), split,
                                                         request.get("MaxPayloadInMB", 6), relative)):
                chunk_in = root / "chunks" / f"{relative}.{index}"
                chunk_in.parent.mkdir(parents=True, exist_ok=True)
                chunk_in.write_bytes(chunk)
                work.append({"input": str(chunk_in), "output": f"{chunk_in}.out", "content_type": content_type,
                             "accept": accept, "relative": relative})
        return work

    def __call__(self, host: Any, request: dict[str, Any], started: dict[str, Any]) -> JobOutcome:
        name = request["TransformJobName"]
        root = host.workdir / "transform-jobs" / name
        processing = request.get("DataProcessing") or {}
        if any(processing.get(k) not in (None, "$", "None") for k in ("InputFilter", "OutputFilter", "JoinSource")):
            raise NotImplementedError(f"DataProcessing {processing} is not emulated")
        model = host.client("sagemaker").describe_model(ModelName=request["ModelName"])
        container = model.get("PrimaryContainer") or model["Containers"][0]
        environment = {**container.get("Environment", {}), **request.get("Environment", {})}
        code = host.code_bundle(environment["SAGEMAKER_SUBMIT_DIRECTORY"], root / "code")
        model_dir = root / "model"
        host.download_tarball(container["ModelDataUrl"], model_dir)
        inputs = host.download_prefix(request["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"], root / "input")
        try:
            work = self._plan(root, request, inputs)
        except PayloadTooLarge as exc:
            return JobOutcome(False, {"TransformJobStatus": "Failed", "FailureReason": f"ClientError: {exc}"})
        plan = root / "plan.json"
        plan.write_text(json.dumps(work))
        completed = subprocess.run(
            [sys.executable, "-c", SERVING_DRIVER, str(code), Path(environment["SAGEMAKER_PROGRAM"]).stem,
             str(model_dir), str(plan)],
            capture_output=True, text=True, timeout=self.timeout_seconds,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "SM_MODEL_DIR": str(model_dir)},
        )
        record = {"name": name, "returncode": completed.returncode, "log": completed.stdout + completed.stderr}
        self.jobs.append(record)
        if completed.returncode != 0:
            lines = completed.stderr.strip().splitlines()
            return JobOutcome(False, {"TransformJobStatus": "Failed",
                                      "FailureReason": f"ClientError: {lines[-1] if lines else 'serving failed'}"})
        record["outputs"] = self._upload(host, request["TransformOutput"], work)
        return JobOutcome(True, {"TransformJobStatus": "Completed"})

    @staticmethod
    def _upload(host: Any, output_config: dict[str, Any], work: list[dict[str, Any]]) -> list[str]:
        line_wise = output_config.get("AssembleWith", "None") == "Line"
        outputs: dict[str, list[bytes]] = {}
        for item in work:
            outputs.setdefault(item["relative"], []).append(Path(item["output"]).read_bytes())
        bucket, prefix = split_s3_uri(output_config["S3OutputPath"].rstrip("/"))
        written = []
        for relative, parts in outputs.items():
            key = f"{prefix}/{relative}.out"
            host.client("s3").put_object(Bucket=bucket, Key=key,
                                         Body=b"".join(assemble_lines(parts) if line_wise else parts))
            written.append(f"s3://{bucket}/{key}")
        return written
