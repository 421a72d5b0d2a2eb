"""Every state the stack synthesizes is a name churn.steps knows, so the CLI and the local run can show it."""

from __future__ import annotations

import pytest

from churn import steps
from churn.schema import FeatureSpec
from tests.infra.asl_resolver import all_states

# every state name churn.steps states
STEPS = {value for name, value in vars(steps).items() if name.isupper() and isinstance(value, str)}
RUN_STEPS = STEPS - set(steps.GROUP_STEPS)


def known_names(spec: FeatureSpec) -> set[str]:
    labels = [None] if spec.is_single_group else [g.name for g in spec.all_groups]
    return RUN_STEPS | {steps.for_group(step, label) for step in steps.GROUP_STEPS for label in labels}


@pytest.mark.parametrize("name", ["main", "variant", "cdnow"])
def test_every_state_name_is_known_to_churn_steps(request, name):
    synthesized = request.getfixturevalue(name)
    spec = synthesized.stack.feature_store.spec
    names = set(all_states(synthesized.definition["States"]))
    assert names <= known_names(spec), sorted(names - known_names(spec))
    for state in names:
        assert steps.base_step(state) in STEPS, state
