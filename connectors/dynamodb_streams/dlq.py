"""Dead letters and DynamoDB Streams (see :mod:`bridge.dlq`): re-reading the records a
failure record's ``DDBStreamBatchInfo`` names (one shard, first and last sequence
number) while the stream still keeps them (24 hours on AWS)."""

from __future__ import annotations

from typing import Any

from bridge.dlq import CannotReplay
from bridge.errors import ConfigError, SourceUnavailable
from bridge.events import dumps, envelope
from bridge.filtering import FilterSet
from connectors.aws import create_client, translate_errors
from connectors.dynamodb_streams.config import DynamoDBStreamsSource
from connectors.dynamodb_streams.normalize import stream_record
from connectors.dynamodb_streams.shards import error_code

__all__ = ["reread"]

_GONE = {"TrimmedDataAccessException", "ResourceNotFoundException", "ValidationException"}
_EMPTY_READS = 5  # an open shard answers empty pages before it has anything


async def reread(
    document: dict[str, Any], *, source: Any, region: str, filters: FilterSet | None
) -> list[bytes]:
    """The event of the records from ``startSequenceNumber`` to ``endSequenceNumber`` of
    the shard, read again, with those that pass ``filters``; raise CannotReplay when the
    stream no longer has them."""
    if not isinstance(source, DynamoDBStreamsSource):
        raise CannotReplay("the failure record is a DynamoDB one, the mapping's source is not")
    info = document["DDBStreamBatchInfo"]
    arn, shard = str(info.get("streamArn")), str(info.get("shardId"))
    start, end = str(info.get("startSequenceNumber")), str(info.get("endSequenceNumber"))
    what = f"shard {shard} of {arn}, sequence numbers {start}..{end}"
    region = source.region or region
    raws: list[dict[str, Any]] = []
    async with create_client("dynamodbstreams", source, region) as streams:
        try:
            with translate_errors(f"replay: DynamoDB stream {arn}"):
                iterator = (
                    await streams.get_shard_iterator(
                        StreamArn=arn,
                        ShardId=shard,
                        ShardIteratorType="AT_SEQUENCE_NUMBER",
                        SequenceNumber=start,
                    )
                )["ShardIterator"]
                empty = 0
                while iterator and empty < _EMPTY_READS:
                    page = await streams.get_records(ShardIterator=iterator, Limit=1000)
                    got = page.get("Records", [])
                    empty = 0 if got else empty + 1
                    raws.extend(r for r in got if int(r["dynamodb"]["SequenceNumber"]) <= int(end))
                    if any(int(r["dynamodb"]["SequenceNumber"]) >= int(end) for r in got):
                        break
                    iterator = page.get("NextShardIterator")
        except (ConfigError, SourceUnavailable) as exc:
            if error_code(exc) in _GONE:
                raise CannotReplay(f"{what}: no longer in the stream ({exc})") from exc
            raise
    if not raws or raws[-1]["dynamodb"]["SequenceNumber"] != end:
        raise CannotReplay(f"{what}: the stream no longer has them all")
    records = [stream_record(raw, stream_arn=arn, region=region) for raw in raws]
    kept = [dumps(r) for r in records if filters is None or filters.matches(r)]
    return [envelope(kept)] if kept else []
