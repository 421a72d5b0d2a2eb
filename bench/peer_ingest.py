"""The peer's ingest method, run in its own venv (bench/.venv-peer: SageMaker Python SDK v3's
`sagemaker-mlops`).

    bench/.venv-peer/bin/python bench/peer_ingest.py --endpoint http://127.0.0.1:PORT \
        --csv bench/out/telco-20000.csv --rows 3000 --spec data/churn.spec.json --group G \
        --max-workers 4 --max-processes 2

`sagemaker.mlops.feature_store.ingest_dataframe(group, data_frame, max_workers, max_processes,
use_batch_write_record=True)`: DescribeFeatureGroup once, then the frame split evenly over
`max_processes` processes (multiprocessing.Pool) and each part over `max_workers` threads sharing
the process's sagemaker-core client (standard retries, 10 attempts); each thread sends its rows
25 at a time with BatchWriteRecord, one call after another. It does not retry unprocessed
entries: they and rejected entries are reported as failed rows (IngestionError). The SDK is
unmodified and reaches the fake endpoint through the standard AWS endpoint variables; the
DataFrame holds the records our ingest writes (bench/sdk_frame.py). Only the `ingest_dataframe`
call is timed, wall and CPU (this process, its threads and the pool's processes).

Imports nothing from this project (that venv does not have it). Prints one JSON line.
"""

from __future__ import annotations

import json
import logging
import sys
from importlib.metadata import version

from sdk_frame import point_sdk_at, records_frame, sdk_options, timed


def main() -> int:
    parser = sdk_options(max_workers=1)
    parser.add_argument("--max-processes", type=int, default=1)
    args = parser.parse_args()

    point_sdk_at(args.endpoint)
    logging.basicConfig(level=logging.ERROR)  # the SDK logs every slice at INFO
    import boto3
    from sagemaker.mlops.feature_store import ingest_dataframe

    df = records_frame(args.csv, args.rows, args.spec)
    measured = timed(lambda: ingest_dataframe(args.group, df, max_workers=args.max_workers,
                                              max_processes=args.max_processes, wait=True,
                                              use_batch_write_record=True, region="us-east-1"))
    print(json.dumps({
        "records": len(df), **measured,
        "sdk": f"SDK v3 sagemaker-mlops {version('sagemaker-mlops')} ingest_dataframe(use_batch_write_record=True, "
               f"max_workers={args.max_workers}, max_processes={args.max_processes})",
        "boto3_version": boto3.__version__, "max_workers": args.max_workers, "max_processes": args.max_processes,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
