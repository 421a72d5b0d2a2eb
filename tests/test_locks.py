"""Every lock file matches the requirements it is compiled from; `make lock` rewrites them.

A lock is stale when a top-level requirement is missing from it or pinned differently, when it
holds a package nothing requires any more, or when a package has no hash. The installed venvs
(the project's, checkov's) must hold exactly what their locks pin.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
# lock -> (the requirements file it is compiled from, the venv that installs it or None)
LOCKS = {
    "requirements.lock": ("requirements.txt", Path(sys.executable)),
    "requirements-dev.lock": ("requirements-dev.txt", Path(sys.executable)),
    "requirements-checkov.lock": ("requirements-checkov.txt", ROOT / ".venv-checkov" / "bin" / "python"),
    "bench/requirements-seed.lock": ("bench/requirements-seed.txt", None),
    "bench/requirements-peer.lock": ("bench/requirements-peer.txt", None),
}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def top_level(path: Path) -> list[Requirement]:
    """The requirements of a requirements file, following `-r` includes."""
    found: list[Requirement] = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found += top_level(path.parent / line[3:].strip())
        elif line:
            found.append(Requirement(line))
    return found


def pins(lock: Path) -> list[tuple[str, str, Marker | None, int]]:
    """(name, version, marker, number of hashes) of each pin of a `uv pip compile --generate-hashes`
    file; a universal lock may pin one package twice, for different Python versions."""
    found: list[tuple[str, str, Marker | None, int]] = []
    for line in lock.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            marker = Marker(match.group(4)) if match.group(4) else None
            found.append((canonicalize_name(match.group(1)), match.group(3), marker, 0))
        elif line.strip().startswith("--hash=sha256:") and found:
            name, version, marker, hashes = found[-1]
            found[-1] = (name, version, marker, hashes + 1)
        elif line and not line.startswith((" ", "#")):
            raise AssertionError(f"{lock.name}: unexpected line {line!r}")
    return found


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_lock_pins_every_top_level_requirement_with_hashes(lock: str) -> None:
    source, _ = LOCKS[lock]
    locked = pins(ROOT / lock)
    for requirement in top_level(ROOT / source):
        name = canonicalize_name(requirement.name)
        versions = [version for pinned, version, _, _ in locked if pinned == name]
        assert versions, f"{lock} lacks {requirement.name} from {source}: run `make lock`"
        for version in versions:
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{lock} pins {name}=={version}, but {source} asks for {requirement}: run `make lock`"
            )
    unhashed = [name for name, _, _, hashes in locked if hashes == 0]
    assert not unhashed, f"{lock}: no hashes for {unhashed}"


@pytest.mark.parametrize("lock", [lock for lock, (_, venv) in sorted(LOCKS.items()) if venv is not None])
def test_installed_venv_is_exactly_the_lock(lock: str) -> None:
    """What the top-level requirements pull in (read from the venv's installed metadata) is what the
    lock pins for this platform: nothing missing, nothing left over, the same versions."""
    source, python = LOCKS[lock]
    assert python is not None and python.exists(), f"{python} missing: run `make install`"
    requirements = [str(r) for r in top_level(ROOT / source)]
    completed = subprocess.run([str(python), str(ROOT / "tests" / "lock_closure.py"), *requirements],
                               capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr
    installed = json.loads(completed.stdout)
    here = [(name, version) for name, version, marker, _ in pins(ROOT / lock) if marker is None or marker.evaluate()]
    wanted = dict(here)
    assert len(wanted) == len(here), f"{lock} pins a package twice for this interpreter"
    assert installed == wanted, (
        f"{lock} differs from what {source} pulls in: missing {sorted(set(installed) - set(wanted))}, "
        f"left over {sorted(set(wanted) - set(installed))}, other versions "
        f"{sorted(n for n in set(installed) & set(wanted) if installed[n] != wanted[n])}: run `make lock`"
    )
