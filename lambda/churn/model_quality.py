"""Reading a training job's evaluation and deciding whether the model is good enough."""

from __future__ import annotations

import io
import json
import posixpath
import tarfile
from dataclasses import dataclass
from typing import Any

from churn import contract
from churn.layout import MODEL_ARTIFACT_FILE

EVALUATION_FILE = "evaluation.json"  # the training script's name for it too (the bundle cannot import churn)
APPROVED = "Approved"  # the ModelApprovalStatus a model that passed the gate is registered with


class EvaluationMissing(Exception):
    """The model artifact holds no evaluation.json: the training script did not finish its job."""


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    validation_auc: float
    threshold: float

    @property
    def reason(self) -> str:
        relation = "meets" if self.passed else "is below"
        return f"validation AUC {self.validation_auc:.4f} {relation} the threshold {self.threshold:.4f}"

    def to_dict(self) -> dict[str, Any]:
        return {contract.PASSED: self.passed, contract.VALIDATION_AUC: self.validation_auc,
                "threshold": self.threshold, contract.REASON: self.reason}


def read_evaluation_from_model_tarball(artifact: bytes, source: str = MODEL_ARTIFACT_FILE) -> dict[str, Any]:
    with tarfile.open(fileobj=io.BytesIO(artifact), mode="r:gz") as archive:
        for member in archive.getmembers():
            if member.isfile() and posixpath.normpath(member.name) == EVALUATION_FILE:  # "./evaluation.json" too
                return json.load(archive.extractfile(member))  # a regular file: extractfile gives no None
    raise EvaluationMissing(f"{source} has no {EVALUATION_FILE}")


def quality_gate(evaluation: dict[str, Any], threshold: float) -> GateDecision:
    try:
        auc = float(evaluation["validation_auc"])
    except (KeyError, TypeError, ValueError):
        raise EvaluationMissing("evaluation.json has no numeric 'validation_auc'") from None
    return GateDecision(passed=auc >= threshold, validation_auc=auc, threshold=threshold)
