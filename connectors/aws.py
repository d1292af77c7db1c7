"""Shared pieces of the AWS-API connectors (SQS, DynamoDB Streams, S3): the client
options every one of them takes, building an aiobotocore client from them, and
the one place botocore's exceptions are translated into the bridge's error tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiobotocore.session
from aiobotocore.session import AioSession
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
)
from pydantic import BaseModel, Field

from bridge.errors import ConfigError, SourceUnavailable

__all__ = ["AwsClientOptions", "create_client", "translate_errors"]

# errors that a retry cannot fix: the configuration names something that is not there
_NOT_FOUND = {
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "ResourceNotFoundException",
    "NoSuchBucket",
}
_AUTH = {
    "AccessDenied",
    "AccessDeniedException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
}


class AwsClientOptions(BaseModel):
    """Where and as whom to call the AWS API. Unset credentials come from the usual
    chain (environment, profile, instance role)."""

    endpoint_url: str | None = Field(None, description="e.g. http://127.0.0.1:4566")
    region: str | None = Field(None, description="default: the bridge's region")
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None


_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AioSession] = (
    weakref.WeakKeyDictionary()
)


def shared_session() -> AioSession:
    """One aiobotocore session for every client of this event loop. A session loads the
    service models and endpoint data (about 17 MiB for a pair of clients); sharing it
    makes an idle mapping cost its client only. Per loop, as a session's credential
    refresh takes loop-bound locks."""
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None:
        session = _sessions[loop] = aiobotocore.session.get_session()
    return session


#: connections a shared client may open at once: every mapping on it may hold some (an
#: SQS long poll, a bucket's notification stream), and unused ones cost nothing
POOL_CONNECTIONS = 1000


@dataclass(eq=False)
class _Shared:
    """One client and how many users hold it."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0
    client: Any = None
    closer: Any = None  # the client's context manager, to exit when the last user leaves


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], _Shared]] = (
    weakref.WeakKeyDictionary()
)


@contextlib.asynccontextmanager
async def create_client(
    service: str, options: AwsClientOptions, region: str, *, path_style: bool = False
) -> AsyncIterator[Any]:
    """An aiobotocore client for ``service`` (``async with``), shared by every user of the
    same service, region, endpoint and credentials on this event loop: an idle mapping
    costs no client of its own. The client is closed when its last user leaves.
    ``path_style`` addresses buckets as ``endpoint/bucket`` (MinIO and most S3 clones)."""
    region_name = options.region or region
    key = (
        service,
        region_name,
        options.endpoint_url,
        options.aws_access_key_id,
        options.aws_secret_access_key,
        options.aws_session_token,
        path_style,
    )
    shared = _clients.setdefault(asyncio.get_running_loop(), {})
    entry = shared.setdefault(key, _Shared())
    async with entry.lock:
        if entry.client is None:
            closer = shared_session().create_client(
                service,
                region_name=region_name,
                endpoint_url=options.endpoint_url,
                aws_access_key_id=options.aws_access_key_id,
                aws_secret_access_key=options.aws_secret_access_key,
                aws_session_token=options.aws_session_token,
                config=Config(
                    retries={"max_attempts": 2, "mode": "standard"},
                    connect_timeout=5,
                    max_pool_connections=POOL_CONNECTIONS,
                    s3={"addressing_style": "path"} if path_style else None,
                ),
            )
            entry.client = await closer.__aenter__()
            entry.closer = closer
        entry.users += 1
    try:
        yield entry.client
    finally:
        async with entry.lock:
            entry.users -= 1
            if entry.users == 0 and entry.client is not None:
                closer, entry.client, entry.closer = entry.closer, None, None
                if shared.get(key) is entry:
                    del shared[key]
                await closer.__aexit__(None, None, None)


@contextlib.contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Translate botocore errors raised inside into ConfigError / SourceUnavailable,
    with ``what`` (e.g. "SQS queue https://...") naming the thing that failed."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = f"{what}: {code}: {error.get('Message', '')}".rstrip(": ")
        if code in _NOT_FOUND or error.get("QueryErrorCode") in _NOT_FOUND:
            raise ConfigError(message) from exc
        if code in _AUTH:
            raise SourceUnavailable(f"{message} (check the credentials)") from exc
        raise SourceUnavailable(message) from exc
    except NoCredentialsError as exc:
        raise SourceUnavailable(f"{what}: no AWS credentials found") from exc
    except EndpointConnectionError as exc:
        raise SourceUnavailable(f"{what}: cannot connect: {exc}") from exc
    except BotoCoreError as exc:
        raise SourceUnavailable(f"{what}: {exc}") from exc
    except OSError as exc:
        raise SourceUnavailable(f"{what}: {exc}") from exc
