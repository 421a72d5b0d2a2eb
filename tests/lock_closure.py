"""Run by a venv's own python: every distribution the given requirements pull in, as JSON {name: version}.

Walks the installed metadata (`importlib.metadata`) from the top-level requirements through their
dependencies, with extras and environment markers evaluated for this interpreter, the way pip
resolved them. `tests/test_locks.py` compares the result with a lock file.
"""

from __future__ import annotations

import json
import sys
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def closure(requirements: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    pending = [(Requirement(text), "") for text in requirements]
    seen: set[tuple[str, str]] = set()
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        for wanted in sorted(requirement.extras) or [""]:
            if (name, wanted) in seen:
                continue
            seen.add((name, wanted))
            distribution = metadata.distribution(requirement.name)
            found[name] = distribution.version
            pending += [(Requirement(text), wanted) for text in distribution.requires or []]
    return found


if __name__ == "__main__":
    json.dump(closure(sys.argv[1:]), sys.stdout)
