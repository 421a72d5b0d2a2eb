"""Which errors each kind of task retries, and the one helper that gives a state its retry and its catch.

Only transient errors are retried: a task's real failures (bad input, a failed job, a query that
failed) go straight to the failure path. Error names per integration, and where each comes from:

- Lambda (`lambda:invoke`): AWS's recommended list
  (https://docs.aws.amazon.com/step-functions/latest/dg/bp-lambda-serviceexception.html), plus
  `Lambda.TooManyRequestsException`, documented there as the error of a throttled invocation.
- Optimized SageMaker integrations (createTrainingJob.sync, createTransformJob.sync, createModel): AWS
  documents no list. `SageMaker.ResourceLimitExceededException` is retried in AWS's own sample
  (connect-sagemaker.html); `ThrottlingException` (no prefix) in AWS's Data Science SDK notebooks;
  `SageMaker.ThrottlingException` is ASSUMED. Never `SageMaker.AmazonSageMakerException`: it is the
  generic service error (validation errors too), and retrying it would issue CreateTrainingJob again
  under the same name.
- AWS SDK integrations (`aws-sdk:sagemaker:*`, `aws-sdk:s3:*`): the error is `<Service>.<Code>` with
  "Exception" appended where the code lacks it (supported-services-awssdk.html). The codes are S3's and
  SageMaker's own throttling and internal-error codes; that they arrive under these names is ASSUMED.
- Optimized Athena (startQueryExecution.sync, getQueryResults): AWS documents no names. ASSUMED: the
  service prefix on the API's modeled transient errors, as community state machines use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_stepfunctions as sfn

LAMBDA_ERRORS = (
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)
SAGEMAKER_JOB_ERRORS = (
    "SageMaker.ResourceLimitExceededException",  # documented (AWS sample)
    "ThrottlingException",  # AWS Data Science SDK notebooks
    "SageMaker.ThrottlingException",  # assumed
)
SAGEMAKER_SDK_ERRORS = ("SageMaker.ThrottlingException", "SageMaker.InternalFailureException")  # assumed
S3_SDK_ERRORS = ("S3.SlowDownException", "S3.InternalErrorException", "S3.ServiceUnavailableException")  # assumed
ATHENA_ERRORS = ("Athena.TooManyRequestsException", "Athena.InternalServerException")  # assumed
# The names above that no AWS page states; README "What was not verified on AWS" lists them.
ASSUMED_ERRORS = (*SAGEMAKER_JOB_ERRORS[2:], *SAGEMAKER_SDK_ERRORS, *S3_SDK_ERRORS, *ATHENA_ERRORS)


@dataclass(frozen=True)
class RetryPolicy:
    errors: tuple[str, ...]
    interval: Duration
    attempts: int


# AWS's recommendation for Lambda: 2 s, 6 attempts, backoff x2.
LAMBDA = RetryPolicy(LAMBDA_ERRORS, Duration.seconds(2), 6)
SAGEMAKER_JOB = RetryPolicy(SAGEMAKER_JOB_ERRORS, Duration.seconds(10), 3)
SAGEMAKER_SDK = RetryPolicy(SAGEMAKER_SDK_ERRORS, Duration.seconds(5), 3)
S3_SDK = RetryPolicy(S3_SDK_ERRORS, Duration.seconds(2), 4)
ATHENA = RetryPolicy(ATHENA_ERRORS, Duration.seconds(5), 4)

FAILURE_PATH = "$.failure"  # where a caught error and cause go; "Record failure" reads them there


def guard(state: Any, retry: RetryPolicy | None, failure: sfn.IChainable | None) -> Any:
    """Retry `retry`'s errors (exponential backoff, full jitter); send every other error to `failure`.

    `failure` None: the error leaves the state's scope instead (a Parallel branch's error becomes the
    Parallel state's, which catches it once)."""
    if retry is not None:
        state.add_retry(errors=list(retry.errors), interval=retry.interval, max_attempts=retry.attempts,
                        backoff_rate=2, jitter_strategy=sfn.JitterType.FULL)
    if failure is not None:
        state.add_catch(failure, errors=[sfn.Errors.ALL], result_path=FAILURE_PATH)
    return state
