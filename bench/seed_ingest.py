"""The seed's ingest method, run in its own venv (bench/.venv-seed: sagemaker SDK v2, `sagemaker<3`).

    bench/.venv-seed/bin/python bench/seed_ingest.py --endpoint http://127.0.0.1:PORT \
        --csv bench/out/telco-20000.csv --rows 3000 --spec data/churn.spec.json --group G

What it does is what the seed did: a pandas DataFrame of the features, then
`sagemaker.feature_store.feature_group.FeatureGroup.ingest(data_frame, max_workers=3, wait=True)`
(IngestionManagerPandas: 3 threads, each with its own boto3 client, one PutRecord per row). The
SDK is unmodified; it reaches the fake endpoint through the standard AWS endpoint variables
(`AWS_ENDPOINT_URL_SAGEMAKER` for DescribeFeatureGroup, `..._FEATURESTORE_RUNTIME` for PutRecord).
The DataFrame holds exactly the records our ingest writes (same feature names and values, the
label as 0/1, one event time), so both methods put the same bytes. Only the `ingest` call is
timed; reading and preparing the DataFrame is not (in our method, converting rows is timed).

Imports nothing from this project (that venv does not have it). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--csv", required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--event-time", default="2026-11-26T07:07:54.120Z")
    parser.add_argument("--max-workers", type=int, default=3)
    args = parser.parse_args()

    os.environ.update(
        AWS_ENDPOINT_URL_SAGEMAKER=args.endpoint,
        AWS_ENDPOINT_URL_SAGEMAKER_FEATURESTORE_RUNTIME=args.endpoint,
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
    )
    logging.getLogger("sagemaker").setLevel(logging.WARNING)
    import boto3
    import pandas as pd
    import sagemaker
    from sagemaker.feature_store.feature_group import FeatureGroup
    from sagemaker.session import Session

    with open(args.spec, encoding="utf-8") as handle:
        spec = json.load(handle)
    features = [spec["record_identifier"], *spec["features"], spec["label"]]
    frame = pd.read_csv(args.csv, nrows=args.rows, dtype=str, keep_default_na=False)
    data = {}
    for feature in features:
        column = frame[feature.get("source") or feature["name"]].str.strip()
        if feature is spec["label"]:
            data[feature["name"]] = column.str.lower().map({"yes": 1, "no": 0}).astype("int64")
        elif feature["type"] == "Integral":
            data[feature["name"]] = pd.to_numeric(column).astype("int64")
        elif feature["type"] == "Fractional":
            data[feature["name"]] = pd.to_numeric(column.replace("", None), errors="raise").astype("float64")
        else:
            data[feature["name"]] = column.astype("string")
    data[spec["event_time"]["name"]] = args.event_time
    df = pd.DataFrame(data)

    session = Session(boto_session=boto3.Session(region_name="us-east-1"))
    group = FeatureGroup(name=args.group, sagemaker_session=session)
    started = time.perf_counter()
    group.ingest(data_frame=df, max_workers=args.max_workers, wait=True)
    seconds = time.perf_counter() - started
    print(json.dumps({
        "records": len(df), "seconds": seconds,
        "sagemaker_version": sagemaker.__version__, "boto3_version": boto3.__version__,
        "max_workers": args.max_workers,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
