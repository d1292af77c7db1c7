"""Shared pieces of the AWS-API connectors (SQS, DynamoDB Streams, S3): the client
options every one of them takes, building an aiobotocore client from them, and
the one place botocore's exceptions are translated into the bridge's error tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Iterator
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


def create_client(
    service: str, options: AwsClientOptions, region: str, *, path_style: bool = False
) -> Any:
    """An aiobotocore client context manager (``async with``) for ``service``;
    ``path_style`` addresses buckets as ``endpoint/bucket`` (MinIO and most S3 clones)."""
    return shared_session().create_client(
        service,
        region_name=options.region or region,
        endpoint_url=options.endpoint_url,
        aws_access_key_id=options.aws_access_key_id,
        aws_secret_access_key=options.aws_secret_access_key,
        aws_session_token=options.aws_session_token,
        config=Config(
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=5,
            s3={"addressing_style": "path"} if path_style else None,
        ),
    )


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
