"""The bridge's local certificate authority: stable per state_dir, trusted through its
bundle by a real TLS client, named by absolute paths in the functions' environment."""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path

import pytest

from bridge.config import parse_config
from bridge.front.tls import LocalCA, trust_environment
from bridge.targets import build_target


def test_it_is_made_once_and_its_key_is_the_owners_alone(tmp_path: Path) -> None:
    ca = LocalCA.in_state_dir(tmp_path)
    ca.ensure()
    first = ca.cert_path.read_bytes()
    ca.ensure()
    assert ca.cert_path.read_bytes() == first
    assert os.stat(ca.key_path).st_mode & 0o777 == 0o600
    bundle = ca.bundle_path.read_bytes()
    assert bundle.endswith(first) and bundle.count(b"BEGIN CERTIFICATE") > 100  # + public CAs


async def _handshake(ca: LocalCA, served: list[str], asked: str) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hi")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=ca.server_context(served))
    port = server.sockets[0].getsockname()[1]
    client = ssl.create_default_context(cafile=str(ca.bundle_path))
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname=asked
        )
        assert await reader.read() == b"hi"
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_a_client_trusting_the_bundle_accepts_the_served_names_only(
    tmp_path: Path,
) -> None:
    ca = LocalCA.in_state_dir(tmp_path)
    ca.ensure()
    await _handshake(ca, ["api.example.test", "127.0.0.1"], "api.example.test")
    await _handshake(ca, ["api.example.test", "127.0.0.1"], "127.0.0.1")
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(ca, ["api.example.test"], "other.example.test")


def test_a_relative_state_dir_is_named_by_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Functions run in folders of their own: a relative path would not reach the bundle."""
    monkeypatch.chdir(tmp_path)
    trust = trust_environment(LocalCA.in_state_dir("state"))
    assert trust["AWS_CA_BUNDLE"] == str(tmp_path / "state" / "front" / "ca-bundle.pem")
    config = parse_config(
        "state_dir: state\n"
        "functions:\n  chat: {type: runtime, command: python -m awslambdaric app.handler,"
        " cwd: functions/chat, env: {KEEP: me}}\n"
        "apis:\n  - {name: chat, type: websocket, routes: {$default: chat}}\n",
        "bridge.yaml",
        {},
    )
    environment = build_target("chat", config.functions["chat"], config)._environment  # type: ignore[attr-defined]
    assert environment["AWS_CA_BUNDLE"] == trust["AWS_CA_BUNDLE"]
    assert Path(environment["NODE_EXTRA_CA_CERTS"]).is_absolute()
    assert environment["KEEP"] == "me"


def test_a_function_that_names_its_own_bundle_keeps_it(tmp_path: Path) -> None:
    config = parse_config(
        f"state_dir: {tmp_path}\n"
        "functions:\n  f: {type: runtime, command: x, env: {AWS_CA_BUNDLE: /mine.pem}}\n"
        "apis:\n  - {name: w, type: websocket, routes: {$default: f}}\n",
        "bridge.yaml",
        {},
    )
    environment = build_target("f", config.functions["f"], config)._environment  # type: ignore[attr-defined]
    assert environment["AWS_CA_BUNDLE"] == "/mine.pem"
