"""Phase: a StateMachineFragment that names its first state and its end states once it has built them."""

from __future__ import annotations

from aws_cdk import aws_stepfunctions as sfn


class Phase(sfn.StateMachineFragment):
    """Subclasses build their states, then call `_bounds` with where the phase starts and ends."""

    def _bounds(self, start: sfn.State, end_states: list[sfn.INextable]) -> None:
        self._start, self._end_states = start, end_states

    @property
    def start_state(self) -> sfn.State:
        return self._start

    @property
    def end_states(self) -> list[sfn.INextable]:
        return self._end_states
