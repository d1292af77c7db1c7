"""Smoke tests: each loopback server of scripts/test-services is real and usable.

They use the project's own client libraries (aiokafka, aiobotocore, httpx) through the
fixtures of tests/services/fixtures.py, and fail (never skip) when a server is missing.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.services.fixtures import (
    MOTO_FIFO_ORDER_XFAIL,
    AwsEndpoint,
    DynamoTable,
    LambdaFunction,
    SqsQueue,
    Websocketd,
)

ECHO = Path(__file__).parent / "functions" / "echo"


# --- Kafka -----------------------------------------------------------------------------------


async def _consume(consumer: AIOKafkaConsumer, count: int, timeout: float = 30.0) -> list[Any]:
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(records) < count:
        assert time.monotonic() < deadline, f"got {len(records)} of {count} records in time"
        batches = await consumer.getmany(timeout_ms=500)
        for batch in batches.values():
            records.extend(batch)
    return records


@pytest.mark.kafka
async def test_kafka_produce_consume_commit_and_resume(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., Awaitable[str]]
) -> None:
    topic = await kafka_topic_factory(partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, f"value-{i}".encode(), key=f"k{i % 3}".encode())
    finally:
        await producer.stop()

    group = f"{topic}-group"
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        records = await _consume(consumer, 10)
        await consumer.commit()
        ends = await consumer.end_offsets(list(consumer.assignment()))
    finally:
        await consumer.stop()
    assert sorted(r.value for r in records) == sorted(f"value-{i}".encode() for i in range(10))
    assert sum(ends.values()) == 10

    # The same group again: it resumes at the committed offsets and sees nothing new.
    again = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await again.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(2)]
        committed = {tp: await again.committed(tp) for tp in parts}
        assert committed == {tp: ends[tp] for tp in parts}
        assert not await again.getmany(timeout_ms=1000)
        for tp in parts:
            assert await again.position(tp) == ends[tp]
    finally:
        await again.stop()


# --- MinIO -----------------------------------------------------------------------------------


@pytest.mark.minio
async def test_minio_put_list_get(
    minio_endpoint: AwsEndpoint, minio_bucket_factory: Callable[..., Awaitable[str]]
) -> None:
    bucket = await minio_bucket_factory()
    async with minio_endpoint.client("s3") as s3:
        for key in ("a/1.json", "a/2.json", "b/3.json"):
            await s3.put_object(Bucket=bucket, Key=key, Body=f'{{"key": "{key}"}}'.encode())
        listed = await s3.list_objects_v2(Bucket=bucket, Prefix="a/")
        assert [o["Key"] for o in listed["Contents"]] == ["a/1.json", "a/2.json"]
        got = await s3.get_object(Bucket=bucket, Key="b/3.json")
        async with got["Body"] as body:
            assert await body.read() == b'{"key": "b/3.json"}'


# --- DynamoDB Local --------------------------------------------------------------------------


async def _read_stream(streams: Any, stream_arn: str, count: int) -> list[dict[str, Any]]:
    """Read every shard of a stream from TRIM_HORIZON until `count` records are in."""
    deadline = time.monotonic() + 30
    records: list[dict[str, Any]] = []
    iterators: dict[str, str | None] = {}
    while len(records) < count:
        assert time.monotonic() < deadline, f"got {len(records)} of {count} stream records"
        desc = await streams.describe_stream(StreamArn=stream_arn)
        for shard in desc["StreamDescription"]["Shards"]:
            if shard["ShardId"] not in iterators:
                it = await streams.get_shard_iterator(
                    StreamArn=stream_arn,
                    ShardId=shard["ShardId"],
                    ShardIteratorType="TRIM_HORIZON",
                )
                iterators[shard["ShardId"]] = it["ShardIterator"]
        for shard_id, iterator in list(iterators.items()):
            if iterator is None:
                continue
            got = await streams.get_records(ShardIterator=iterator, Limit=100)
            records.extend(got["Records"])
            iterators[shard_id] = got.get("NextShardIterator")
        if len(records) < count:
            await asyncio.sleep(0.2)
    return records


@pytest.mark.dynamodb
async def test_dynamodb_stream_insert_modify_remove(
    dynamodb_endpoint: AwsEndpoint,
    dynamodb_table_factory: Callable[..., Awaitable[DynamoTable]],
) -> None:
    table = await dynamodb_table_factory("NEW_AND_OLD_IMAGES")
    assert table.stream_arn
    key = {"pk": {"S": "item-1"}}
    async with dynamodb_endpoint.client("dynamodb") as ddb:
        await ddb.put_item(TableName=table.name, Item={**key, "n": {"N": "1"}})
        await ddb.update_item(
            TableName=table.name,
            Key=key,
            UpdateExpression="SET n = :two",
            ExpressionAttributeValues={":two": {"N": "2"}},
        )
        await ddb.delete_item(TableName=table.name, Key=key)

    async with dynamodb_endpoint.client("dynamodbstreams") as streams:
        records = await _read_stream(streams, table.stream_arn, 3)

    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY", "REMOVE"]
    insert, modify, remove = (r["dynamodb"] for r in records)
    assert insert["NewImage"]["n"] == {"N": "1"} and "OldImage" not in insert
    assert modify["OldImage"]["n"] == {"N": "1"} and modify["NewImage"]["n"] == {"N": "2"}
    assert remove["OldImage"]["n"] == {"N": "2"} and "NewImage" not in remove
    assert all(r["dynamodb"]["Keys"] == key for r in records)
    assert all(r["dynamodb"]["StreamViewType"] == "NEW_AND_OLD_IMAGES" for r in records)
    seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
    assert seqs == sorted(seqs)


# --- SQS, on moto and on ElasticMQ -----------------------------------------------------------


@pytest.mark.sqs
async def test_sqs_send_receive_delete(
    sqs_endpoint: AwsEndpoint, sqs_queue_factory: Callable[..., Awaitable[SqsQueue]]
) -> None:
    queue = await sqs_queue_factory(visibility_timeout=30)
    async with sqs_endpoint.client("sqs") as sqs:
        for i in range(3):
            await sqs.send_message(QueueUrl=queue.url, MessageBody=f"body-{i}")
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while len(got) < 3 and time.monotonic() < deadline:
            answer = await sqs.receive_message(
                QueueUrl=queue.url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            )
            got.extend(answer.get("Messages", []))
        assert sorted(m["Body"] for m in got) == ["body-0", "body-1", "body-2"]
        deleted = await sqs.delete_message_batch(
            QueueUrl=queue.url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
            ],
        )
        assert len(deleted["Successful"]) == 3
        attrs = await sqs.get_queue_attributes(
            QueueUrl=queue.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
        assert attrs["Attributes"] == {
            "ApproximateNumberOfMessages": "0",
            "ApproximateNumberOfMessagesNotVisible": "0",
        }


@pytest.mark.sqs
async def test_sqs_fifo_queue_with_redrive(
    sqs_endpoint: AwsEndpoint, sqs_queue_factory: Callable[..., Awaitable[SqsQueue]]
) -> None:
    queue = await sqs_queue_factory(fifo=True, max_receive_count=2)
    assert queue.fifo and queue.name.endswith(".fifo")
    assert queue.dead_letter is not None and queue.dead_letter.fifo
    async with sqs_endpoint.client("sqs") as sqs:
        attrs = await sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["All"])
        assert queue.dead_letter.arn in attrs["Attributes"]["RedrivePolicy"]
        for i in range(3):
            await sqs.send_message(QueueUrl=queue.url, MessageBody=f"m{i}", MessageGroupId="g")
        answer = await sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10)
        assert [m["Body"] for m in answer["Messages"]] == ["m0", "m1", "m2"]


@pytest.mark.sqs
@pytest.mark.parametrize(
    "sqs_server", [pytest.param("moto", marks=MOTO_FIFO_ORDER_XFAIL), "elasticmq"], indirect=True
)
async def test_sqs_fifo_group_keeps_its_order_after_a_visibility_timeout(
    sqs_endpoint: AwsEndpoint, sqs_queue_factory: Callable[..., Awaitable[SqsQueue]]
) -> None:
    """1..12 sent to one group, 1..6 received and left to time out: the group comes back
    from its start, 1..12, as on SQS. (moto hands out 6..12 first, then 1..5.)"""
    queue = await sqs_queue_factory(fifo=True, visibility_timeout=1)
    async with sqs_endpoint.client("sqs") as sqs:
        for n in range(1, 13):
            await sqs.send_message(QueueUrl=queue.url, MessageBody=str(n), MessageGroupId="g")
        first = await sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=6)
        assert [int(m["Body"]) for m in first["Messages"]] == [1, 2, 3, 4, 5, 6]
        locked = await sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10)
        assert locked.get("Messages", []) == []  # the group waits while 1..6 are in flight
        await asyncio.sleep(1.5)
        got: list[int] = []
        deadline = time.monotonic() + 10
        while len(got) < 12 and time.monotonic() < deadline:
            answer = await sqs.receive_message(
                QueueUrl=queue.url, MaxNumberOfMessages=10, VisibilityTimeout=30, WaitTimeSeconds=1
            )
            messages = answer.get("Messages", [])
            got.extend(int(m["Body"]) for m in messages)
            for m in messages:  # deleted, so the group's next messages can be received
                await sqs.delete_message(QueueUrl=queue.url, ReceiptHandle=m["ReceiptHandle"])
    assert got == list(range(1, 13))


# --- the Runtime Interface Emulator ----------------------------------------------------------


@pytest.mark.rie
async def test_rie_invokes_a_real_handler(
    lambda_function_factory: Callable[..., LambdaFunction],
) -> None:
    function = lambda_function_factory(ECHO, "app.handler")
    event = {"Records": [{"eventSource": "aws:sqs", "body": "hello"}]}
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        response = await client.post(function.invoke_url, json=event)
    assert response.status_code == 200, function.log_tail()
    body = response.json()
    assert body["echo"] == event
    assert body["function_name"] == "echo"
    assert body["request_id"]
    assert 0 < body["remaining_ms"] <= 30_000


@pytest.mark.rie
async def test_rie_reports_function_error_as_200_without_error_header(
    lambda_function_factory: Callable[..., LambdaFunction],
) -> None:
    """The emulator's documented quirk: AWS would add X-Amz-Function-Error: Unhandled."""
    function = lambda_function_factory(ECHO, "app.fail")
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        response = await client.post(function.invoke_url, json={"please": "fail"})
    assert response.status_code == 200
    assert "x-amz-function-error" not in response.headers
    body = response.json()
    assert body["errorType"] == "ValueError"
    assert "asked to fail" in body["errorMessage"]


# --- websocketd ------------------------------------------------------------------------------

THREE_LINES = (
    "import sys, time\n"
    "for n in (1, 2, 3):\n"
    "    print(f'line {n}')\n"
    "sys.stdout.flush()\n"
    "time.sleep(60)\n"
)


async def _three_messages(url: str) -> list[str]:
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        got: list[str] = []
        async with asyncio.timeout(10):
            while len(got) < 3:
                message = await ws.receive()
                assert message.type is aiohttp.WSMsgType.TEXT, message
                got.append(message.data)
    return got


@pytest.mark.websocketd
async def test_websocketd_sends_each_line_as_a_text_message_and_restarts(
    websocketd_factory: Callable[..., Websocketd],
) -> None:
    feed = websocketd_factory([sys.executable, "-c", THREE_LINES])
    assert feed.url == f"ws://127.0.0.1:{feed.port}/"
    assert await _three_messages(feed.url) == ["line 1", "line 2", "line 3"], feed.log_tail()

    # Killed and started again on the same port: a new client gets a new run of the program.
    feed.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        await _three_messages(feed.url)
    feed.restart()
    assert await _three_messages(feed.url) == ["line 1", "line 2", "line 3"], feed.log_tail()
