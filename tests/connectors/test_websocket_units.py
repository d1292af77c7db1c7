"""The websocket source's pure parts: options, partition keys, filters, identifiers."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from bridge.filtering import UNREADABLE, NotJson
from connectors.websocket.config import WebSocketSource
from connectors.websocket.normalize import filter_view, key_of, public_url, websocket_record


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"url": "http://x/"}, "ws:// or wss://"),
        ({"url": "ws://x/", "tls": {"ca_file": "c.pem"}}, "wss://"),
        ({"url": "ws://x/", "resume": {"field": "seq"}}, "{resume}"),
        ({"url": "wss://x/", "tls": {"cert_file": "c.pem"}}, "go together"),
        ({"url": "ws://x/", "reconnect_initial_seconds": 5, "reconnect_max_seconds": 1}, "less"),
        ({"url": "ws://x/", "spool": {"fsync": "sometimes"}}, "fsync"),
        ({"url": "ws://x/", "surprise": 1}, "surprise"),
    ],
)
def test_bad_options_are_refused_naming_them(options: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=None) as error:
        WebSocketSource.model_validate({"type": "websocket", **options})
    assert problem in str(error.value)


def test_resume_may_sit_in_an_open_message() -> None:
    source = WebSocketSource.model_validate(
        {
            "type": "websocket",
            "url": "ws://x/",
            "open_messages": ['{"from": {resume}}'],
            "resume": {"field": "seq"},
        }
    )
    assert source.resume is not None and source.resume.initial == ""


@pytest.mark.parametrize(
    ("payload", "path", "key"),
    [
        (b'{"symbol": "AAPL"}', "symbol", "AAPL"),
        (b'{"meta": {"room": 7}}', "meta.room", "7"),
        (b'{"flag": true}', "flag", "true"),
        (b'{"symbol": {"nested": 1}}', "symbol", None),
        (b'{"other": 1}', "symbol", None),
        (b"not json", "symbol", None),
        (b"\xff\xfe", "symbol", None),
        (b'{"symbol": "AAPL"}', None, None),
    ],
)
def test_partition_keys(payload: bytes, path: str | None, key: str | None) -> None:
    assert key_of(payload, path) == key


def test_the_url_in_events_has_no_query_nor_user() -> None:
    assert public_url("wss://me:pw@feed.example.com:8443/v1?token=s#x") == (
        "wss://feed.example.com:8443/v1"
    )


def record(payload: bytes, binary: bool) -> dict[str, object]:
    return websocket_record(
        seq=1, payload=payload, binary=binary, received=0.0, connection=1, key=None
    )


def test_filters_see_json_data_text_and_unreadable_binary() -> None:
    assert filter_view(record(b'{"a": 1}', False))["data"] == {"a": 1}
    assert filter_view(record(b'{"a": 1}', True))["data"] == {"a": 1}
    text = filter_view(record(b"hello", False))["data"]
    assert isinstance(text, NotJson) and text == "hello"
    assert filter_view(record(b"\xff\x00", True))["data"] is UNREADABLE


def test_binary_data_is_base64_and_text_stays_text() -> None:
    assert record(b"\x00\x01", True)["data"] == base64.b64encode(b"\x00\x01").decode()
    assert record(json.dumps({"é": 1}).encode(), False)["data"] == '{"\\u00e9": 1}'


def test_partial_batch_responses_name_messages_by_sequence_number(tmp_path: Path) -> None:
    from bridge.checkpoints import SqliteCheckpointStore
    from bridge.connector import ConnectorContext, Record
    from bridge.spool import Entry
    from connectors.websocket import WebSocketConnector

    store = SqliteCheckpointStore(tmp_path / "c.sqlite3")
    source = WebSocketSource.model_validate({"type": "websocket", "url": "ws://x/"})
    connector = WebSocketConnector(
        source,
        ConnectorContext(mapping="m", checkpoints=store.namespace("m"), state_dir=str(tmp_path)),
    )
    entry = Entry(seq=17, time=0.0, payload=b"{}")
    assert connector.item_identifier(Record("-", 17, (entry, None))) == "17"
    assert [connector.identifier_key(i) for i in ("17", 17, "0017", "x", True, None, 1.5)] == [
        "17",
        "17",
        "17",
        None,
        None,
        None,
        None,
    ]
    store.close()
