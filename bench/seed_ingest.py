"""The seed's ingest method, run in its own venv (bench/.venv-seed: sagemaker SDK v2, `sagemaker<3`).

    bench/.venv-seed/bin/python bench/seed_ingest.py --endpoint http://127.0.0.1:PORT \
        --csv bench/out/telco-20000.csv --rows 3000 --spec data/churn.spec.json --group G

What it does is what the seed did: a pandas DataFrame of the features, then
`sagemaker.feature_store.feature_group.FeatureGroup.ingest(data_frame, max_workers=3, wait=True)`
(IngestionManagerPandas: 3 threads, each with its own boto3 client, one PutRecord per row). The
SDK is unmodified; it reaches the fake endpoint through the standard AWS endpoint variables. The
DataFrame holds the records our ingest writes (bench/sdk_frame.py). Only the `ingest` call is
timed, wall and CPU (this process and its threads); reading and preparing the DataFrame is not
(in our method, converting rows is timed).

Imports nothing from this project (that venv does not have it). Prints one JSON line.
"""

from __future__ import annotations

import json
import logging
import sys

from sdk_frame import point_sdk_at, records_frame, sdk_options, timed


def main() -> int:
    args = sdk_options(max_workers=3).parse_args()

    point_sdk_at(args.endpoint)
    logging.getLogger("sagemaker").setLevel(logging.WARNING)
    import boto3
    import sagemaker
    from sagemaker.feature_store.feature_group import FeatureGroup
    from sagemaker.session import Session

    df = records_frame(args.csv, args.rows, args.spec)
    session = Session(boto_session=boto3.Session(region_name="us-east-1"))
    group = FeatureGroup(name=args.group, sagemaker_session=session)
    measured = timed(lambda: group.ingest(data_frame=df, max_workers=args.max_workers, wait=True))
    print(json.dumps({
        "records": len(df), **measured,
        "sdk": f"SDK v{sagemaker.__version__} FeatureGroup.ingest(max_workers={args.max_workers})",
        "boto3_version": boto3.__version__, "max_workers": args.max_workers, "max_processes": 1,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
