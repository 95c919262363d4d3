"""DynamoDB: the library against raw boto3 doing the same I/O, in one run, on moto_server over HTTP.

Run: ``python -m benchmarks.bench_dynamodb [--repeats N] [--turns N]``. Starts
its own ``moto_server`` on a free loopback port (or uses
``$AGENTS_PERSIST_TEST_DYNAMODB_ENDPOINT``) and a fresh table, and removes
both afterwards.

The raw side uses the same client settings and already-encoded bytes. A raw
append is what a library append of two messages sends: one
``TransactWriteItems`` with one chunk item and the head, conditional on the
head's write token. A raw load is a paginated, strongly consistent ``Query``
of the library's own items for the thread, the chunk payloads joined in
sort-key order, split into messages and decoded.

moto is far slower than DynamoDB per request (and copies the whole table on
every transaction), so absolute numbers say little; the ratios, measured
side by side, are the point.
"""

from __future__ import annotations

import secrets
import sys
import tempfile
import time
from typing import Any

import boto3

from agents_persist import DynamoDbCheckpointer, from_url
from agents_persist.backends.dynamodb.layout import pack_messages, unpack_messages
from agents_persist.codec import decode_messages, encode_head, encode_messages
from benchmarks.harness import (
    SAVE_LABEL,
    Report,
    add_growing_conversation,
    make_messages,
    measure_appends,
    measure_load,
    parse_args,
    snapshot_of,
)
from tests.backends.dynamodb.helpers import raw_items
from tests.servers import dynamodb_endpoint_or_start

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}


RAW_SAVE = "raw boto3 +2 msgs onto 1000"


def main() -> int:
    args = parse_args(__doc__ or "")
    with tempfile.TemporaryDirectory() as folder:
        server = dynamodb_endpoint_or_start(folder)
        try:
            table = f"agents_persist_bench_{secrets.token_hex(6)}"
            url = f"dynamodb://{REGION}/{table}?endpoint_url={server.endpoint_url}"
            cp = from_url(url, create_table=True, **CREDENTIALS)
            assert isinstance(cp, DynamoDbCheckpointer)
            raw = boto3.client("dynamodb", endpoint_url=server.endpoint_url, region_name=REGION, **CREDENTIALS)
            try:
                report = run(cp, raw, table, args.repeats, args.turns)
            finally:
                cp.close()
                raw.delete_table(TableName=table)
        finally:
            server.stop()
    print(report.render())
    return 0


def run(cp: DynamoDbCheckpointer, raw: Any, table: str, repeats: int, turns: int) -> Report:
    report = Report(f"DynamoDB (moto_server over HTTP, boto3), {repeats} samples each")
    head = encode_head(snapshot_of([]))
    two = pack_messages(encode_messages(make_messages(2, 1000)))
    raw_counter = [0]

    def raw_append(size: int) -> float:
        raw_counter[0] += 1
        tid = f"raw-{size}-{raw_counter[0]}"
        token = secrets.token_hex(8)
        base = pack_messages(encode_messages(make_messages(size)))
        raw.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": {"thread_id": {"S": tid}, "sk": {"S": "c0:0"}, "p": {"B": base}}}},
                {
                    "Put": {
                        "TableName": table,
                        "Item": {"thread_id": {"S": tid}, "sk": {"S": "H"}, "w": {"S": token}, "h": {"B": head}},
                        "ConditionExpression": "attribute_not_exists(sk)",
                    }
                },
            ]
        )
        start = time.perf_counter()
        raw.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": {"thread_id": {"S": tid}, "sk": {"S": "c1:0"}, "p": {"B": two}}}},
                {
                    "Put": {
                        "TableName": table,
                        "Item": {
                            "thread_id": {"S": tid},
                            "sk": {"S": "H"},
                            "w": {"S": secrets.token_hex(8)},
                            "v": {"N": "2"},
                            "n": {"N": str(size + 2)},
                            "u": {"N": repr(time.time())},
                            "h": {"B": head},
                        },
                        "ConditionExpression": "#w = :w",
                        "ExpressionAttributeNames": {"#w": "w"},
                        "ExpressionAttributeValues": {":w": {"S": token}},
                    }
                },
            ]
        )
        elapsed = time.perf_counter() - start
        for sk in ("c0:0", "c1:0", "H"):
            raw.delete_item(TableName=table, Key={"thread_id": {"S": tid}, "sk": {"S": sk}})
        return elapsed

    measure_appends(report, cp, {RAW_SAVE: lambda: raw_append(1000)}, repeats)
    report.ratio("library / raw save at 1000", SAVE_LABEL.format(size=1000), RAW_SAVE, 1.5)

    def raw_load() -> None:
        items = raw_items(raw, table, "bench-load")
        chunks = sorted((item["sk"]["S"], item["p"]["B"]) for item in items if item["sk"]["S"] != "H")
        decode_messages(unpack_messages(b"".join(payload for _, payload in chunks), 1000, "bench-load"))

    measure_load(report, cp, "raw boto3 Query 1000 + decode", raw_load, repeats)

    add_growing_conversation(report, cp, "bench-growing", turns)
    cp.delete("bench-growing")

    return report


if __name__ == "__main__":
    sys.exit(main())
