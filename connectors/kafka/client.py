"""What the Kafka source and the ``kafka://`` destination share: the aiokafka connection
options built from a ``KafkaSource`` (security protocol, SASL, TLS context), and the one
place aiokafka's exceptions are translated into the bridge's error tree."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from typing import Any

from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context

from bridge.errors import ConfigError, SourceUnavailable
from connectors.kafka.config import KafkaSource

__all__ = ["client_options", "translate_errors"]

_AUTH = (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    IllegalSaslStateError,
    UnsupportedSaslMechanismError,
)
_DENIED = (
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError,
)


def _ssl_context(config: KafkaSource) -> ssl.SSLContext | None:
    tls = config.tls
    if tls is None or tls is False:
        return None
    if tls is True:
        default: ssl.SSLContext = create_ssl_context()
        return default
    try:
        context = create_ssl_context(
            cafile=tls.ca_file,
            certfile=tls.cert_file,
            keyfile=tls.key_file,
            password=tls.key_password,
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"Kafka TLS files: {exc}") from exc
    context.check_hostname = tls.check_hostname
    return context  # type: ignore[no-any-return]


def client_options(config: KafkaSource) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaConsumer / AIOKafkaProducer; raise ConfigError for
    unreadable TLS files."""
    context = _ssl_context(config)
    protocol = ("SASL_" if config.sasl else "") + ("SSL" if context else "PLAINTEXT")
    options: dict[str, Any] = {
        "bootstrap_servers": list(config.bootstrap_servers),
        "client_id": config.client_id,
        "security_protocol": protocol,
        "ssl_context": context,
        "request_timeout_ms": int(config.request_timeout_seconds * 1000),
    }
    if config.sasl:
        options["sasl_mechanism"] = config.sasl.mechanism
        options["sasl_plain_username"] = config.sasl.username
        options["sasl_plain_password"] = config.sasl.password
    return options


@contextlib.contextmanager
def translate_errors(what: str, servers: str) -> Iterator[None]:
    """Translate aiokafka / network errors raised inside into SourceUnavailable, naming
    ``what`` and the bootstrap ``servers``."""
    try:
        yield
    except _AUTH as exc:
        raise SourceUnavailable(
            f"{what}: authentication with Kafka at {servers} failed "
            f"(check sasl mechanism, username and password): {exc}"
        ) from exc
    except _DENIED as exc:
        raise SourceUnavailable(f"{what}: not authorized by Kafka at {servers}: {exc}") from exc
    except ssl.SSLError as exc:
        raise SourceUnavailable(f"{what}: TLS with Kafka at {servers} failed: {exc}") from exc
    except KafkaConnectionError as exc:
        raise SourceUnavailable(f"{what}: cannot connect to Kafka at {servers} ({exc})") from exc
    except KafkaError as exc:
        raise SourceUnavailable(f"{what}: Kafka at {servers} is unavailable ({exc})") from exc
    except TimeoutError as exc:
        raise SourceUnavailable(f"{what}: Kafka at {servers} did not answer in time") from exc
    except OSError as exc:
        raise SourceUnavailable(f"{what}: cannot reach Kafka at {servers}: {exc}") from exc
