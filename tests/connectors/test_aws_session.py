"""All AWS clients of one event loop share one aiobotocore session (its service models
are most of an idle mapping's memory)."""

from __future__ import annotations

import asyncio

from connectors.aws import AwsClientOptions, create_client, shared_session


async def test_clients_of_one_loop_share_one_session() -> None:
    options = AwsClientOptions(
        endpoint_url="http://127.0.0.1:9", aws_access_key_id="x", aws_secret_access_key="x"
    )
    session = shared_session()
    async with (
        create_client("sqs", options, "us-east-1") as a,
        create_client("dynamodb", options, "us-east-1") as b,
    ):
        loader = session.get_component("data_loader")
        assert a._loader is loader and b._loader is loader  # models loaded once
    assert shared_session() is session


def test_each_loop_gets_its_own_session() -> None:
    async def one() -> object:
        return shared_session()

    assert asyncio.run(one()) is not asyncio.run(one())
