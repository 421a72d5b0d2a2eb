"""Where the stack can be deployed: the regions that have both the Powertools layer parameter and the image."""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import Aws, CfnRule, CfnRuleAssertion, Fn, Stack, Token

# The regions where Powertools for AWS Lambda (Python) publishes its layer ARN as the public SSM
# parameter the functions' layer is resolved from: the region matrix of the workflow that writes it,
# aws-powertools/powertools-lambda-python .github/workflows/update_ssm.yml. me-central-1 and
# me-south-1 have the layer but are not in that matrix; the China, GovCloud and ISO partitions get
# layers without the parameter (or no layer at all).
POWERTOOLS_PARAMETER_REGIONS = frozenset({
    "af-south-1",
    "ap-east-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-south-1", "ap-south-2",
    "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5", "ap-southeast-7",
    "ca-central-1", "ca-west-1",
    "eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2", "eu-west-1", "eu-west-2",
    "eu-west-3",
    "il-central-1", "mx-central-1", "sa-east-1",
    "us-east-1", "us-east-2", "us-west-1", "us-west-2",
})


class UnsupportedRegion(ValueError):
    """The stack's region lacks the Powertools layer parameter or the XGBoost image."""


def supported_regions(image_regions: Iterable[str]) -> list[str]:
    """The regions with both the layer parameter and the image (the SageMaker SDK's list for the version)."""
    return sorted(POWERTOOLS_PARAMETER_REGIONS.intersection(image_regions))


def _message(supported: list[str]) -> str:
    return ("needs the Powertools layer's SSM parameter and the SageMaker XGBoost image, found together in: "
            + ", ".join(supported))


def require_supported_region(stack: Stack, supported: list[str]) -> None:
    """A concrete region must be supported: synthesis fails otherwise. A region-agnostic template gets a
    CloudFormation Rule, so that deploying it to another region fails before anything is created."""
    if not Token.is_unresolved(stack.region):
        if stack.region not in supported:
            raise UnsupportedRegion(f"region {stack.region} is not supported: the stack {_message(supported)}")
        return
    CfnRule(
        stack,
        "SupportedRegion",
        assertions=[
            CfnRuleAssertion(
                assert_=Fn.condition_contains(supported, Aws.REGION),
                assert_description=f"This region is not supported: the stack {_message(supported)}",
            )
        ],
    )
