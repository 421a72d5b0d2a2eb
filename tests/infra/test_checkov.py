"""checkov on the synthesised templates: zero failed checks, every skip justified in the resource's metadata.

checkov pins boto3/botocore/packaging far below requirements.txt, so it runs from its own venv
(.venv-checkov, installed from requirements-checkov.lock by `make install`).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path

import pytest

from stacks import nag as checkov_skips

ROOT = Path(__file__).resolve().parents[2]
CHECKOV_VENV = ROOT / ".venv-checkov"
# Every check the stack skips, and on what resource type: a new skip needs a reason here too.
ALLOWED_SKIPS = {
    "AWS::S3::Bucket": {checkov_skips.BUCKET_ACCESS_LOGS_SKIP},
    "AWS::Lambda::Function": {*checkov_skips.LAMBDA_SKIPS, checkov_skips.ENVIRONMENT_SKIP[0]},
}


@pytest.fixture(scope="session")
def checkov_bin() -> Path:
    """checkov from its own venv, which `make test` (`make install`) builds from requirements-checkov.lock."""
    if os.environ.get("CHECKOV"):
        return Path(os.environ["CHECKOV"])
    binary = CHECKOV_VENV / "bin" / "checkov"
    assert binary.exists(), f"{binary} is missing: run `make install` (make test does)"
    return binary


def run_checkov(checkov_bin: Path, template: Path) -> dict:
    completed = subprocess.run(
        [str(checkov_bin), "--file", str(template), "--framework", "cloudformation", "--output", "json",
         "--compact", "--quiet", "--skip-download"],
        capture_output=True, text=True, timeout=600,
        env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
    )
    assert completed.returncode in (0, 1), completed.stderr[-3000:]  # 1: failed checks (asserted below)
    report = json.loads(completed.stdout)
    if isinstance(report, list):  # one entry per framework
        (report,) = [r for r in report if r["check_type"] == "cloudformation"]
    return report


def failures(report: dict) -> list[str]:
    return [f"{f['check_id']} {f['resource']}: {f['check_name']}" for f in report["results"]["failed_checks"]]


@pytest.mark.parametrize("name", ["main", "variant", "cdnow"])
def test_checkov_finds_nothing(checkov_bin, request, name):
    synthesized = request.getfixturevalue(name)
    report = run_checkov(checkov_bin, synthesized.template_path)
    summary = report["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] == len(synthesized.json["Resources"])
    assert failures(report) == []
    assert summary["passed"] > 100  # it did check something


@pytest.mark.parametrize("name", ["main", "variant", "cdnow"])
def test_every_skip_is_justified_in_the_resource_metadata(request, name):
    synthesized = request.getfixturevalue(name)
    for logical_id, resource in synthesized.json["Resources"].items():
        skips = resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
        for skip in skips:
            assert skip["id"] in ALLOWED_SKIPS.get(resource["Type"], set()), (logical_id, skip["id"])
            assert len(skip["comment"]) > 60, (logical_id, skip)


def test_checkov_does_check_the_skipped_resources(checkov_bin, main, tmp_path):
    """Guard for the tests above: without the bucket's and functions' metadata the checks fail again."""
    template = copy.deepcopy(main.json)
    for resource in template["Resources"].values():
        resource.get("Metadata", {}).pop("checkov", None)
    path = tmp_path / "unskipped.template.json"
    path.write_text(json.dumps(template))
    failed = {f.split()[0] for f in failures(run_checkov(checkov_bin, path))}
    assert failed == {sid for ids in ALLOWED_SKIPS.values() for sid in ids}

