"""The local_dir source on a real folder: S3 event shape, restarts, and the walls."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import re
import shutil
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridge.checkpoints import SqliteCheckpointStore
from bridge.connector import ConnectorContext, Record
from connectors.local_dir import LocalDirConnector, LocalDirSource


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = SqliteCheckpointStore(tmp_path / "state.sqlite3")
    yield s
    s.close()


@contextlib.asynccontextmanager
async def opened(folder: Path, store: Any, **options: Any) -> AsyncIterator[LocalDirConnector]:
    config = LocalDirSource(type="local_dir", path=str(folder), **options)
    connector = LocalDirConnector(
        config, ConnectorContext(mapping="m", checkpoints=store.namespace("m"))
    )
    await connector.open()
    try:
        yield connector
    finally:
        await connector.aclose()


async def take(connector: LocalDirConnector, n: int, timeout: float = 10.0) -> list[Record]:
    """The next ``n`` records read, in order; fails if fewer arrive in time."""
    out: list[Record] = []
    reader = connector.read()

    async def pull() -> None:
        async for chunk in reader:
            out.extend(chunk)
            if len(out) >= n:
                return

    await asyncio.wait_for(pull(), timeout)
    await reader.aclose()  # type: ignore[attr-defined]
    return out


async def nothing_more(connector: LocalDirConnector, wait: float = 0.6) -> list[Record]:
    """Whatever is read within ``wait`` seconds (expected: nothing)."""
    out: list[Record] = []
    reader = connector.read()

    async def pull() -> None:
        async for chunk in reader:
            out.extend(chunk)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(pull(), wait)
    return out


async def next_chunk(connector: LocalDirConnector, reader: Any) -> list[Record]:
    """The open reader's next chunk (within 5 s), committed."""
    chunk = list(await asyncio.wait_for(reader.__anext__(), 5))
    await connector.commit(chunk)
    return chunk


def events(connector: LocalDirConnector, records: list[Record]) -> list[tuple[str, str]]:
    return [
        (e["eventName"], e["s3"]["object"]["key"])
        for e in (connector.normalize(r) for r in records)
    ]


async def test_put_record_has_the_exact_s3_shape(tmp_path: Path, store: Any) -> None:
    folder = tmp_path / "photos"
    (folder / "dir").mkdir(parents=True)
    content = b"hello world\n"
    (folder / "dir" / "my file é+1.txt").write_bytes(content)
    async with opened(folder, store) as connector:
        [record] = await take(connector, 1)
        event = connector.normalize(record)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event.pop("eventTime"))
    sequencer = event["s3"]["object"].pop("sequencer")
    assert re.fullmatch(r"[0-9A-F]{18}", sequencer)
    assert event.pop("responseElements").keys() == {"x-amz-request-id", "x-amz-id-2"}
    assert event == {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "trigger-bridge"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "trigger-bridge",
            "bucket": {
                "name": "photos",
                "ownerIdentity": {"principalId": "trigger-bridge"},
                "arn": "arn:aws:s3:::photos",
            },
            "object": {
                "key": "dir/my+file+%C3%A9%2B1.txt",
                "size": len(content),
                "eTag": hashlib.md5(content).hexdigest(),
            },
        },
    }
    assert record.partition == "dir/my file é+1.txt"


async def test_delete_record_has_no_size_or_etag(tmp_path: Path, store: Any) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x")
    async with opened(tmp_path / "in", store) as connector:
        [put] = await take(connector, 1)
        await connector.commit([put])
    (tmp_path / "in" / "a.txt").unlink()
    async with opened(tmp_path / "in", store) as connector:
        [delete] = await take(connector, 1)
        event = connector.normalize(delete)
    assert event["eventName"] == "ObjectRemoved:Delete"
    assert set(event["s3"]["object"]) == {"key", "sequencer"}


async def test_restart_delivers_changes_made_while_down_and_nothing_twice(
    tmp_path: Path, store: Any
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b", "d"):
        (folder / f"{name}.txt").write_text(name)
    async with opened(folder, store) as connector:
        records = await take(connector, 3)
        await connector.commit(records)
    # while the bridge is down
    (folder / "a.txt").write_text("a, changed")
    (folder / "b.txt").unlink()
    (folder / "c.txt").write_text("new")
    async with opened(folder, store) as connector:
        seen = sorted(events(connector, await take(connector, 3)))
        assert await nothing_more(connector) == []
    assert seen == [
        ("ObjectCreated:Put", "a.txt"),
        ("ObjectCreated:Put", "c.txt"),
        ("ObjectRemoved:Delete", "b.txt"),
    ]


async def test_uncommitted_events_come_again_after_restart(tmp_path: Path, store: Any) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    (folder / "b.txt").write_text("b")
    async with opened(folder, store) as connector:
        records = await take(connector, 2)
        await connector.commit([r for r in records if r.partition == "a.txt"])
    async with opened(folder, store) as connector:
        again = await take(connector, 1)
        assert await nothing_more(connector) == []
    assert [r.partition for r in again] == ["b.txt"]


async def test_live_changes_are_seen_by_the_watcher(tmp_path: Path, store: Any) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    async with opened(folder, store, rescan_interval_seconds=0) as connector:
        reader = connector.read()
        await asyncio.sleep(0.3)
        (folder / "sub").mkdir()
        (folder / "sub" / "new.bin").write_bytes(b"1234")
        chunk = await asyncio.wait_for(reader.__anext__(), 10)
        assert events(connector, list(chunk)) == [("ObjectCreated:Put", "sub/new.bin")]
        await connector.commit(list(chunk))
        (folder / "sub" / "new.bin").unlink()
        chunk = await asyncio.wait_for(reader.__anext__(), 10)
        assert events(connector, list(chunk)) == [("ObjectRemoved:Delete", "sub/new.bin")]
        await reader.aclose()  # type: ignore[attr-defined]


async def test_symlinks_and_paths_outside_are_never_followed(tmp_path: Path, store: Any) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    folder = tmp_path / "in"
    folder.mkdir()
    os.symlink(outside / "secret.txt", folder / "link.txt")
    os.symlink(outside, folder / "linkdir")
    (folder / "real.txt").write_text("real")
    async with opened(folder, store) as connector:
        records = await take(connector, 1)
        assert await nothing_more(connector) == []
    assert [r.partition for r in records] == ["real.txt"]


async def test_hidden_names_prefix_and_suffix_are_honoured(tmp_path: Path, store: Any) -> None:
    folder = tmp_path / "in"
    (folder / "logs" / ".tmp").mkdir(parents=True)
    (folder / "logs" / "a.json").write_text("{}")
    (folder / "logs" / "b.txt").write_text("")
    (folder / "logs" / ".partial.json").write_text("{}")
    (folder / "logs" / ".tmp" / "c.json").write_text("{}")
    (folder / "other.json").write_text("{}")
    async with opened(folder, store, prefix="logs/", suffix=".json") as connector:
        records = await take(connector, 1)
        assert await nothing_more(connector) == []
    assert [r.partition for r in records] == ["logs/a.json"]


async def test_only_the_configured_event_types_are_emitted(tmp_path: Path, store: Any) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    async with opened(folder, store, events=["s3:ObjectRemoved:*"]) as connector:
        assert await nothing_more(connector) == []
    (folder / "a.txt").unlink()
    async with opened(folder, store, events=["s3:ObjectRemoved:*"]) as connector:
        assert events(connector, await take(connector, 1)) == [("ObjectRemoved:Delete", "a.txt")]


async def test_a_file_instead_of_a_folder_is_a_config_error(tmp_path: Path, store: Any) -> None:
    (tmp_path / "file").write_text("")
    config = LocalDirSource(type="local_dir", path=str(tmp_path / "file"))
    connector = LocalDirConnector(
        config, ConnectorContext(mapping="m", checkpoints=store.namespace("m"))
    )
    from bridge.errors import ConfigError

    with pytest.raises(ConfigError, match="is not a folder"):
        await connector.open()


async def test_a_slow_disk_does_not_stall_the_event_loop(
    tmp_path: Path, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every stat of a changed file runs in a thread: on a slow (network) disk the loop,
    and with it every other mapping, keeps running."""
    import time

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    async with opened(folder, store, rescan_interval_seconds=0) as connector:
        assert len(await take(connector, 1)) == 1  # found by the start-up scan
        real = LocalDirConnector._stat

        def slow_stat(self: LocalDirConnector, path: Path) -> Any:
            time.sleep(0.3)  # an NFS server taking its time
            return real(self, path)

        monkeypatch.setattr(LocalDirConnector, "_stat", slow_stat)
        gaps = [0.0]

        async def tick() -> None:
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        async def write_later() -> None:
            await asyncio.sleep(0.5)  # the watcher is running: it reports the change
            (folder / "a.txt").write_text("changed")

        ticker = asyncio.create_task(tick())
        writer = asyncio.create_task(write_later())
        try:
            [record] = await take(connector, 1)
        finally:
            ticker.cancel()
            await writer
        assert record.data["key"] == "a.txt" and record.data["size"] == len("changed")
        assert len(gaps) > 10 and max(gaps) < 0.2  # it kept ticking through the 0.3 s stat


async def test_a_file_created_while_the_folder_is_listed_is_not_reported_deleted(
    tmp_path: Path, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rescan lists the folder in a thread; a file created meanwhile is reported by
    the watcher, and the listing (taken before it existed) must not turn that into a
    Delete."""
    import time

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "old.txt").write_text("old")
    async with opened(folder, store, rescan_interval_seconds=0) as connector:
        assert [r.data["key"] for r in await take(connector, 1)] == ["old.txt"]
        real = LocalDirConnector._walk

        def walk_then_create(self: LocalDirConnector) -> Any:
            listing = real(self)  # taken before new.txt exists
            (folder / "new.txt").write_text("new")
            deadline = time.monotonic() + 5
            while "new.txt" not in self._emitted and time.monotonic() < deadline:
                time.sleep(0.01)  # the watcher, on the loop, reports it meanwhile
            return listing

        monkeypatch.setattr(LocalDirConnector, "_walk", walk_then_create)
        reader = connector.read()
        seen: list[Record] = []

        async def pull() -> None:
            async for chunk in reader:
                seen.extend(chunk)

        puller = asyncio.create_task(pull())
        try:
            await asyncio.sleep(0.3)  # the watcher is running
            await asyncio.wait_for(connector._scan(), 10)
            await asyncio.sleep(0.5)
        finally:
            puller.cancel()
            await asyncio.gather(puller, return_exceptions=True)
    events = [(r.data["event"], r.data["key"]) for r in seen]
    assert ("ObjectCreated:Put", "new.txt") in events
    assert ("ObjectRemoved:Delete", "new.txt") not in events
    assert connector._emitted.get("new.txt") is not None


@pytest.mark.parametrize("force_polling", [False, True], ids=["inotify", "watchfiles"])
async def test_a_file_name_that_is_not_utf8_is_delivered_encoded_and_the_rest_flow(
    tmp_path: Path, store: Any, force_polling: bool
) -> None:
    """S3 keys are bytes: a name with a byte that is not UTF-8 is URL-encoded byte for byte.
    It is checkpointed like any other (not delivered again after a restart). inotify follows
    such names; watchfiles (``force_polling``) cannot, and scans stand in for it."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.txt").write_text("good")
    with open(os.fsencode(folder) + b"/bad\xff.txt", "w") as f:
        f.write("bad")
    options = {"rescan_interval_seconds": 0, "force_polling": force_polling}
    async with opened(folder, store, **options) as connector:
        records = await take(connector, 2)
        events = {connector.normalize(r)["s3"]["object"]["key"]: r for r in records}
        assert set(events) == {"good.txt", "bad%FF.txt"}
        for record in records:
            await connector.commit([record])
        (folder / "later.txt").write_text("later")
        [later] = await take(connector, 1, timeout=15)
        assert later.data["key"] == "later.txt"
        await connector.commit([later])
        if not force_polling:  # seen by the watcher itself
            assert not connector._watcher_down
            with open(os.fsencode(folder) + b"/new\xfe.txt", "w") as f:
                f.write("new")
            [new] = await take(connector, 1, timeout=5)
            assert connector.normalize(new)["s3"]["object"]["key"] == "new%FE.txt"
            await connector.commit([new])
    async with opened(folder, store, **options) as connector:
        assert await nothing_more(connector) == []  # nothing is delivered again


async def test_the_folder_watcher_comes_back_after_a_failure(
    tmp_path: Path, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the watcher fails (here: the inotify watch limit, hit by a new folder) it is
    tried again; once it works, changes are seen by it (not by the slower stand-in scans)
    again."""
    from connectors.local_dir import connector as module
    from connectors.local_dir import watch

    monkeypatch.setattr(module, "_WATCHER_RETRY", 0.5)
    monkeypatch.setattr(module, "_STAND_IN_SCAN", 60.0)  # the scans find nothing in time
    real = watch._Inotify._add
    refused: list[str] = []

    def limited(self: Any, path: str, *, required: bool = False) -> int | None:
        if path.endswith("/sub") and not refused:
            refused.append(path)
            raise watch._error(errno.ENOSPC, path)
        return real(self, path, required=required)

    monkeypatch.setattr(watch._Inotify, "_add", limited)
    folder = tmp_path / "in"
    folder.mkdir()
    async with opened(folder, store, rescan_interval_seconds=0) as connector:
        reader = connector.read()

        async def next_keys() -> list[str]:
            return [r.data["key"] for r in await next_chunk(connector, reader)]

        first = asyncio.ensure_future(next_keys())
        await asyncio.sleep(0.3)  # the watcher runs
        (folder / "sub").mkdir()
        (folder / "sub" / "a.txt").write_text("a")  # the watcher fails on the new folder
        assert await first == ["sub/a.txt"]  # found by the scan run when the watcher failed
        assert connector._watcher_down and refused
        await asyncio.sleep(1.0)  # the watcher is tried again
        assert not connector._watcher_down
        (folder / "sub" / "back.txt").write_text("back")
        assert await next_keys() == ["sub/back.txt"]
        await reader.aclose()  # type: ignore[attr-defined]


async def test_the_watchfiles_watcher_comes_back_after_a_failure(
    tmp_path: Path, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same with watchfiles (``force_polling``), which fails on a name that is not
    UTF-8, and is known to be back at its first batch of changes."""
    from connectors.local_dir import connector as module

    monkeypatch.setattr(module, "_WATCHER_RETRY", 0.5)
    monkeypatch.setattr(module, "_STAND_IN_SCAN", 60.0)  # the scans find nothing in time
    folder = tmp_path / "in"
    folder.mkdir()
    bad = os.fsencode(folder) + b"/bad\xff.txt"
    async with opened(folder, store, rescan_interval_seconds=0, force_polling=True) as connector:
        reader = connector.read()

        async def next_keys() -> list[str]:
            return [r.data["key"] for r in await next_chunk(connector, reader)]

        first = asyncio.ensure_future(next_keys())
        await asyncio.sleep(0.5)  # the watcher runs
        with open(bad, "w") as f:
            f.write("bad")  # the watcher fails on this name
        assert await first == ["bad\udcff.txt"]  # found by the scan run when it failed
        assert connector._watcher_down
        os.remove(bad)  # so that it does not fail again
        await asyncio.sleep(1.5)  # the watcher is tried again
        (folder / "back.txt").write_text("back")
        seen: list[str] = []
        while len(seen) < 2:  # and the delete: seen by the watcher, or by the scan when back
            seen += await next_keys()
        assert sorted(seen) == ["back.txt", "bad\udcff.txt"]
        assert not connector._watcher_down
        await reader.aclose()


# ---------------------------------------------------------------- one watcher for all


async def test_every_mapping_of_a_process_shares_one_inotify_watcher(
    tmp_path: Path, store: Any
) -> None:
    """Three mappings, one inotify instance and no thread of their own; each gets the
    changes of its own folder only. The instance goes with the last mapping."""
    from connectors.local_dir import watch

    folders = [tmp_path / f"in{i}" for i in range(3)]
    async with contextlib.AsyncExitStack() as stack:
        connectors = []
        for i, folder in enumerate(folders):
            config = LocalDirSource(type="local_dir", path=str(folder), rescan_interval_seconds=0)
            c = LocalDirConnector(
                config, ConnectorContext(mapping=f"m{i}", checkpoints=store.namespace(f"m{i}"))
            )
            await c.open()
            stack.push_async_callback(c.aclose)
            connectors.append(c)
        readers = [c.read() for c in connectors]
        firsts = [asyncio.ensure_future(r.__anext__()) for r in readers]
        await asyncio.sleep(0.3)
        hub = watch._Inotify._of_loop[asyncio.get_running_loop()]
        assert len(hub.watches) == 3
        assert not [t for t in threading.enumerate() if "AnyIO" in t.name]
        for i, folder in enumerate(folders):
            (folder / f"file{i}.txt").write_text(str(i))
        chunks = await asyncio.wait_for(asyncio.gather(*firsts), 5)
        assert [[r.data["key"] for r in chunk] for chunk in chunks] == [
            ["file0.txt"],
            ["file1.txt"],
            ["file2.txt"],
        ]
        for r in readers:
            await r.aclose()  # type: ignore[attr-defined]
    assert asyncio.get_running_loop() not in watch._Inotify._of_loop


async def test_nested_folders_of_two_mappings_each_get_their_keys(
    tmp_path: Path, store: Any
) -> None:
    """One mapping on a folder, another on a folder inside it: a file there is an event of
    each, under its own key; when the inner mapping stops, the outer one still sees it."""
    outer = tmp_path / "data"
    (outer / "in").mkdir(parents=True)
    async with opened(outer, store, rescan_interval_seconds=0) as a:
        config = LocalDirSource(type="local_dir", path=str(outer / "in"), rescan_interval_seconds=0)
        b = LocalDirConnector(
            config, ConnectorContext(mapping="b", checkpoints=store.namespace("b"))
        )
        await b.open()
        a_reader, b_reader = a.read(), b.read()
        a_first = asyncio.ensure_future(a_reader.__anext__())
        b_first = asyncio.ensure_future(b_reader.__anext__())
        await asyncio.sleep(0.3)  # both watch
        (outer / "in" / "f.txt").write_text("f")
        got_a, got_b = await asyncio.wait_for(asyncio.gather(a_first, b_first), 5)
        assert [r.data["key"] for r in got_a] == ["in/f.txt"]
        assert [r.data["key"] for r in got_b] == ["f.txt"]
        await b_reader.aclose()  # type: ignore[attr-defined]
        await b.aclose()
        (outer / "in" / "g.txt").write_text("g")
        got_a = await asyncio.wait_for(a_reader.__anext__(), 5)
        assert [r.data["key"] for r in got_a] == ["in/g.txt"]
        await a_reader.aclose()  # type: ignore[attr-defined]


async def test_a_folder_moved_inside_is_followed_under_its_new_name(
    tmp_path: Path, store: Any
) -> None:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text("a")
    outside = tmp_path / "outside"
    async with opened(folder, store, rescan_interval_seconds=0) as connector:
        reader = connector.read()

        async def next_events() -> list[tuple[str, str]]:
            return sorted(events(connector, await next_chunk(connector, reader)))

        assert await next_events() == [("ObjectCreated:Put", "sub/a.txt")]
        (folder / "sub").rename(folder / "moved")
        assert await next_events() == [
            ("ObjectCreated:Put", "moved/a.txt"),
            ("ObjectRemoved:Delete", "sub/a.txt"),
        ]
        (folder / "moved" / "b.txt").write_text("b")  # its watch follows the new name
        assert await next_events() == [("ObjectCreated:Put", "moved/b.txt")]
        (folder / "moved").rename(outside)
        assert await next_events() == [
            ("ObjectRemoved:Delete", "moved/a.txt"),
            ("ObjectRemoved:Delete", "moved/b.txt"),
        ]
        (outside / "c.txt").write_text("c")  # no longer ours
        (folder / "d.txt").write_text("d")
        assert await next_events() == [("ObjectCreated:Put", "d.txt")]
        await reader.aclose()  # type: ignore[attr-defined]


async def test_a_removed_folder_is_scanned_for_until_the_watcher_can_follow_it_again(
    tmp_path: Path, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watched folder itself removed: its files' deletes are delivered, scans stand in
    for the watcher and find the folder when it is back, and the watcher follows it again."""
    from connectors.local_dir import connector as module

    monkeypatch.setattr(module, "_WATCHER_RETRY", 1.0)
    monkeypatch.setattr(module, "_STAND_IN_SCAN", 0.3)
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text("a")
    async with opened(folder, store, rescan_interval_seconds=0) as connector:
        reader = connector.read()

        async def next_events() -> list[tuple[str, str]]:
            return sorted(events(connector, await next_chunk(connector, reader)))

        assert await next_events() == [("ObjectCreated:Put", "sub/a.txt")]
        shutil.rmtree(folder)
        assert await next_events() == [("ObjectRemoved:Delete", "sub/a.txt")]
        assert connector._watcher_down
        folder.mkdir()
        (folder / "d.txt").write_text("d")
        assert await next_events() == [("ObjectCreated:Put", "d.txt")]  # a stand-in scan
        await asyncio.sleep(1.5)  # the watcher is tried again
        assert not connector._watcher_down
        monkeypatch.setattr(module, "_STAND_IN_SCAN", 60.0)
        (folder / "e.txt").write_text("e")
        assert await next_events() == [("ObjectCreated:Put", "e.txt")]
        await reader.aclose()
