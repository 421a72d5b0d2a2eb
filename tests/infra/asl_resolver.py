"""Turn a synthesised DefinitionString (an Fn::Join of text and references) into plain ASL JSON.

References become deterministic stand-ins: pseudo parameters their us-east-1 values, Fn::GetAtt
Arn an ARN of the right service, Ref a name (an ARN for the types whose Ref is their ARN),
Fn::FindInMap the us-east-1 row of the mapping. The stand-ins contain no quotes, so the joined text
parses as JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.support.moto import ACCOUNT, REGION

PSEUDO = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::URLSuffix": "amazonaws.com"}
ARN_BY_TYPE = {
    "AWS::Lambda::Function": "arn:aws:lambda:{region}:{account}:function:{name}",
    "AWS::IAM::Role": "arn:aws:iam::{account}:role/{name}",
    "AWS::KMS::Key": "arn:aws:kms:{region}:{account}:key/{name}",
    "AWS::S3::Bucket": "arn:aws:s3:::{name}",
    "AWS::StepFunctions::StateMachine": "arn:aws:states:{region}:{account}:stateMachine:{name}",
    "AWS::SNS::Topic": "arn:aws:sns:{region}:{account}:{name}",
}
REF_IS_ARN = ("AWS::StepFunctions::StateMachine", "AWS::SNS::Topic")  # CloudFormation's Ref of these


def _name(logical_id: str) -> str:
    return logical_id.lower()[:50]


def resolve(template: dict[str, Any], value: Any) -> str:
    if isinstance(value, str):
        return value
    ((function, args),) = value.items()
    if function == "Ref":
        if args in PSEUDO:
            return PSEUDO[args]
        resource_type = template["Resources"].get(args, {}).get("Type")
        if resource_type in REF_IS_ARN:
            return ARN_BY_TYPE[resource_type].format(region=REGION, account=ACCOUNT, name=_name(args))
        return _name(args)
    if function == "Fn::GetAtt":
        logical_id, attribute = args
        resource_type = template["Resources"][logical_id]["Type"]
        if attribute != "Arn" or resource_type not in ARN_BY_TYPE:
            raise ValueError(f"no stand-in for {logical_id}.{attribute} ({resource_type})")
        return ARN_BY_TYPE[resource_type].format(region=REGION, account=ACCOUNT, name=_name(logical_id))
    if function == "Fn::Join":
        separator, parts = args
        return separator.join(resolve(template, part) for part in parts)
    if function == "Fn::Sub":
        return re.sub(r"\$\{([^}]+)\}", lambda m: PSEUDO.get(m.group(1)) or _name(m.group(1)), args)
    if function == "Fn::FindInMap":
        mapping, top, second = args
        return template["Mappings"][mapping][resolve(template, top)][second]
    raise ValueError(f"unsupported intrinsic {function}")


def resolve_definition(template: dict[str, Any], definition_string: Any) -> dict[str, Any]:
    return json.loads(resolve(template, definition_string))


def all_states(states: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every state, including those inside Map item processors and Parallel branches."""
    found: dict[str, dict[str, Any]] = {}
    for name, state in states.items():
        found[name] = state
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            found.update(all_states(processor["States"]))
        for branch in state.get("Branches", []):
            found.update(all_states(branch["States"]))
    return found
