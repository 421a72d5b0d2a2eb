"""One customer scored now, from the online store, with the features that moved the probability most.

The same model files and encoding as the batch scores (the training script's serving module), read
from the model.tar.gz it unpacks; the features are each online feature group's latest record.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

from churn.features import RowError, parse_value
from churn.schema import Feature
from pipeline.backends import FeatureContribution, Prediction
from pipeline.errors import BadInput, OperatorError
from pipeline.local_aws.batch_transform import extracted_model, serving_module
from pipeline.runner import TRAINING_DIR

SERVING_MODULE = "serving"  # training/serving.py: load_model, predict_frame, contributions


def online_features(catalog: Any, runtime: Any, feature_groups: dict[str, str], record_id: str,
                    scores_command: str) -> tuple[str, dict[str, str], list[str]]:
    """The customer's id as the records hold it ('007' of an Integral id is '7'), every online feature group's
    latest record of the customer, merged (a feature the group defines and the record leaves out is None:
    missing), and the groups read: DescribeFeatureGroup says which groups have
    an online store (not the labels group), their features, the record identifier's type and for how long
    they keep a record (TtlDuration); GetRecord reads it.
    `catalog`/`runtime` are boto3's sagemaker/featurestore-runtime clients, or the local feature store (both)."""
    values: dict[str, str] = {}
    read: list[str] = []
    key = record_id
    for name in feature_groups.values():
        described = catalog.describe_feature_group(FeatureGroupName=name)
        online = described.get("OnlineStoreConfig") or {}
        if not online.get("EnableOnlineStore"):
            continue
        key = record_key(record_id, described)
        record = runtime.get_record(FeatureGroupName=name, RecordIdentifierValueAsString=key).get("Record")
        if not record:
            raise _missing_record(key, name, online.get("TtlDuration"), scores_command, len(feature_groups) > 1)
        values.update(dict.fromkeys(definition["FeatureName"] for definition in described["FeatureDefinitions"]))
        values.update((item["FeatureName"], item["ValueAsString"]) for item in record)
        read.append(name)
    return key, values, read


def record_key(record_id: str, described: dict[str, Any]) -> str:
    """The customer's id as ingest wrote it: stripped, an Integral one as its plain digits ('007' -> '7')."""
    name = described["RecordIdentifierFeatureName"]
    kind = next(d["FeatureType"] for d in described["FeatureDefinitions"] if d["FeatureName"] == name)
    try:
        key = parse_value(Feature(name, kind, "--id"), record_id)
    except RowError as exc:
        raise BadInput(f"--id {record_id!r}: {exc.detail.removesuffix(f' (value {record_id!r})')}") from None
    assert key is not None, "the CLI refuses an empty --id"
    return key


def _missing_record(record_id: str, name: str, ttl: dict[str, Any] | None, scores_command: str,
                    several: bool) -> OperatorError:
    """GetRecord answers nothing for an id never ingested and for a record past its TTL alike."""
    where = f"the online store of feature group {name}"  # the name carries the spec group's (churn.naming)
    hint = (f"predict needs the customer's record in every online feature group (the batch scores, "
            f"`{scores_command}`, also score a customer some groups do not know)" if several else
            f"check the id; `{scores_command}` lists scored customers")
    if not ttl:
        return OperatorError(f"customer {record_id!r} is not in {where}", hint, error="RecordNotFound")
    unit = str(ttl.get("Unit", "")).lower()
    kept = f"{ttl.get('Value')} {unit.removesuffix('s') if ttl.get('Value') == 1 else unit}"
    return OperatorError(
        f"customer {record_id!r} is not in {where}: the customer is unknown, or the record expired "
        f"(the group keeps a record {kept} after its event time)",
        f"{hint}; ingesting the customer's data again brings an expired record back", error="RecordExpiredOrUnknown")


def predict_artifact(artifact: Path | bytes, model: str, model_version: str, feature_groups: list[str],
                     record_id: str, values: dict[str, Any], top: int) -> Prediction:
    """Score one customer's features with a model.tar.gz as SageMaker unpacks it, with per-feature
    contributions (XGBoost `pred_contribs`, in log-odds)."""
    import pandas as pd

    try:
        with extracted_model(artifact) as model_dir:
            serving = serving_module(TRAINING_DIR, SERVING_MODULE)
            churn_model = serving.load_model(model_dir)
            if undefined := [name for name in churn_model.feature_names if name not in values]:
                raise OperatorError(f"model version {model_version} ({model}) was trained on features that no "
                                    f"online feature group read defines: {', '.join(undefined)} (another feature spec)",
                                    "run the pipeline on the deployed spec: its model then scores customers",
                                    error="ModelSpecMismatch")
            frame = pd.DataFrame([{name: values.get(name) for name in churn_model.feature_names}], dtype=object)
            probability = float(serving.predict_frame(churn_model, frame)[0])
            features, bias = serving.contributions(churn_model, frame)
            row = features.iloc[0]
            ranked = sorted(((name, float(row[name])) for name in churn_model.feature_names), key=lambda item: item[1])
            base = float(bias.iloc[0])
    except (OSError, ValueError, tarfile.TarError) as exc:
        raise OperatorError(f"could not score customer {record_id!r} with {model}: {' '.join(str(exc).split())}",
                            error="PredictionFailed") from None
    up = [FeatureContribution(n, values.get(n), c) for n, c in reversed(ranked) if c > 0][:top]
    down = [FeatureContribution(n, values.get(n), c) for n, c in ranked if c < 0][:top]
    return Prediction(record_id, probability, base, up, down, model_version, model, feature_groups)
