"""The SageMaker XGBoost container image, resolved at synth from the SageMaker SDK's own table."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from aws_cdk import Aws, CfnMapping, Token
from constructs import Construct

FRAMEWORK = "xgboost"


@dataclass(frozen=True)
class ContainerImage:
    uri: str  # a literal for a concrete region, a Fn::FindInMap token for a region-agnostic stack
    repository_arn: str  # its repository, in an AWS-owned account (same kind of value)


@lru_cache(maxsize=8)
def xgboost_image_uris(version: str) -> dict[str, str]:
    """Region -> training image URI for every region the installed SDK lists for `version`."""
    from sagemaker.core import image_uris  # slow import (~3 s): only when a stack is synthesised

    config = image_uris.config_for_framework(FRAMEWORK)["training"]
    versions = config["versions"]
    version = config.get("version_aliases", {}).get(version, version)
    if version not in versions:
        raise ValueError(f"xgboost_version {version!r} is unknown to the SageMaker SDK; known: {sorted(versions)}")
    return {
        region: image_uris.retrieve(FRAMEWORK, region=region, version=version, image_scope="training")
        for region in sorted(versions[version]["registries"])
    }


def _account(uri: str) -> str:
    return uri.split(".", 1)[0]


def xgboost_image(scope: Construct, *, version: str, region: str, regions: Iterable[str]) -> ContainerImage:
    """A plain string when the stack's region is known, else a lookup keyed on AWS::Region that maps
    `regions` (those the stack supports: stacks.regions)."""
    wanted = set(regions)
    uris = {r: uri for r, uri in xgboost_image_uris(version).items() if r in wanted}
    repositories = {u.split("/", 1)[1].split(":", 1)[0] for u in uris.values()}  # <registry>/<repository>:<tag>
    if len(repositories) != 1:
        raise ValueError(f"expected one repository for xgboost {version}, got {sorted(repositories)}")
    repository = repositories.pop()
    if not Token.is_unresolved(region):  # one of `regions`: the stack required it (stacks.regions)
        uri, account = uris[region], _account(uris[region])
    else:
        mapping = CfnMapping(scope, "XGBoostImage",
                             mapping={r: {"uri": u, "account": _account(u)} for r, u in uris.items()})
        uri, account = mapping.find_in_map(Aws.REGION, "uri"), mapping.find_in_map(Aws.REGION, "account")
    return ContainerImage(uri, f"arn:{Aws.PARTITION}:ecr:{Aws.REGION}:{account}:repository/{repository}")
