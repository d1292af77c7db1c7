"""The durable spool: order, restarts, torn writes, bounds, and a real kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bridge.spool import BINARY, Spool, SpoolError


async def opened(folder: Path, **options: object) -> Spool:
    spool = Spool(folder, **options)  # type: ignore[arg-type]
    await spool.open()
    return spool


async def take(spool: Spool, after: int, n: int) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    cursor = spool.cursor(after)
    async with asyncio.timeout(5):
        while len(out) < n:
            out += [(e.seq, e.payload) for e in cursor.take(n - len(out))]
            if len(out) < n:
                await spool.wait_written(cursor.position)
    cursor.close()
    return out


async def test_entries_come_back_in_order_across_segments_and_restarts(tmp_path: Path) -> None:
    spool = await opened(tmp_path, segment_bytes=200, sync="never")
    for i in range(1, 21):
        assert await spool.append(f"frame {i}".encode()) == i
    assert len(list(tmp_path.glob("*.log"))) > 3
    assert await take(spool, 0, 20) == [(i, f"frame {i}".encode()) for i in range(1, 21)]
    await spool.ack(12)
    await spool.aclose()
    again = await opened(tmp_path, segment_bytes=200, sync="never")
    assert again.acked == 12 and again.last_seq == 20
    assert await again.append(b"frame 21") == 21
    assert [seq for seq, _ in await take(again, again.acked, 9)] == list(range(13, 22))
    await again.aclose()


async def test_a_reader_waits_for_what_is_appended_later(tmp_path: Path) -> None:
    spool = await opened(tmp_path, sync="batch")
    reader = asyncio.create_task(take(spool, 0, 3))
    await asyncio.sleep(0.05)
    assert not reader.done()
    for payload in (b"a", b"b", b"c"):
        await spool.append(payload)
        await asyncio.sleep(0.01)
    assert await reader == [(1, b"a"), (2, b"b"), (3, b"c")]
    await spool.aclose()


async def test_a_torn_write_is_cut_off_and_numbering_goes_on(tmp_path: Path) -> None:
    spool = await opened(tmp_path, sync="frame")
    for payload in (b"one", b"two", b"three"):
        await spool.append(payload)
    await spool.aclose()
    [segment] = tmp_path.glob("*.log")
    whole = segment.stat().st_size
    with open(segment, "ab") as f:  # half an entry, as a power cut leaves it
        f.write(b"\x20\x00\x00\x00\xde\xad\xbe\xef\x04\x00")
    again = await opened(tmp_path, sync="frame")
    assert segment.stat().st_size == whole and again.last_seq == 3
    assert await again.append(b"four") == 4
    assert await take(again, 0, 4) == [(1, b"one"), (2, b"two"), (3, b"three"), (4, b"four")]
    await again.aclose()


async def test_a_flipped_byte_in_the_tail_is_found_by_its_crc(tmp_path: Path) -> None:
    spool = await opened(tmp_path, sync="never")
    for payload in (b"one", b"two"):
        await spool.append(payload)
    await spool.aclose()
    [segment] = tmp_path.glob("*.log")
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF
    segment.write_bytes(bytes(data))
    again = await opened(tmp_path)
    assert again.last_seq == 1
    await again.aclose()


async def test_appending_waits_while_full_and_goes_on_once_acknowledged(tmp_path: Path) -> None:
    spool = await opened(tmp_path, max_bytes=1000, segment_bytes=300, sync="never")
    n = 0
    while spool.size < 1000:
        n += 1
        await spool.append(b"x" * 60)
    blocked = asyncio.create_task(spool.append(b"after"))
    await asyncio.sleep(0.1)
    assert not blocked.done()
    await spool.ack(n - 1)  # frees every segment but the tail
    assert await asyncio.wait_for(blocked, 2) == n + 1
    assert spool.size < 1000
    await spool.aclose()


@pytest.mark.parametrize("sync", ["frame", "batch", "interval", "never"])
async def test_each_sync_mode_makes_an_entry_durable(tmp_path: Path, sync: str) -> None:
    spool = await opened(tmp_path, sync=sync, fsync_interval=0.02)
    seqs = [await spool.append(b"p", flags=BINARY) for _ in range(5)]
    await asyncio.wait_for(spool.durable(seqs[-1]), 2)
    if sync == "frame":
        assert spool._synced == 5
    [entry] = [e for e in spool.entries(3, 4)]
    assert entry.seq == 4 and entry.binary
    await spool.aclose()


async def test_a_lost_position_file_delivers_the_spool_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """position.json is renamed into place unsynced: a power cut may leave it empty. The
    entries still in the spool then come again (at least once), not an error."""
    spool = await opened(tmp_path, segment_bytes=200, sync="never")
    for i in range(1, 21):
        await spool.append(f"frame {i}".encode())
    await spool.ack(12)
    await spool.aclose()
    first_kept = min(int(p.name[:-4]) for p in tmp_path.glob("*.log"))
    assert first_kept > 1  # acknowledged segments were deleted
    (tmp_path / "position.json").write_text("")
    again = await opened(tmp_path, segment_bytes=200, sync="never")
    assert again.acked == first_kept - 1 and again.last_seq == 20
    assert [seq for seq, _ in await take(again, again.acked, 20 - again.acked)] == list(
        range(first_kept, 21)
    )
    assert "position.json is unreadable" in caplog.text
    await again.aclose()


async def test_a_folder_that_cannot_be_made_is_a_spool_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SpoolError, match="spool"):
        await opened(tmp_path / "file" / "spool")


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from bridge.spool import Spool

    async def main():
        spool = Spool(sys.argv[1], segment_bytes=4096, sync=sys.argv[2])
        await spool.open()
        while True:
            seq = await spool.append(b"payload %d" % (spool.last_seq + 1) * 3)
            print(seq, flush=True)

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("sync", ["never", "batch"])
async def test_kill_9_loses_no_entry_whose_append_returned(tmp_path: Path, sync: str) -> None:
    """A writer killed with SIGKILL mid-stream: every seq it reported is in the spool,
    whole, and the numbering goes on after the last."""
    folder = tmp_path / "spool"
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder), sync],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert process.stdout is not None
    reported = 0
    while reported < 3000:
        line = process.stdout.readline()
        assert line, "the writer ended early"
        reported = int(line)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    for line in process.stdout.read().split():
        reported = int(line)
    process.stdout.close()
    spool = await opened(folder)
    assert spool.last_seq >= reported
    entries = spool.entries(0, spool.last_seq)
    assert [e.seq for e in entries] == list(range(1, spool.last_seq + 1))
    assert all(e.payload == b"payload %d" % e.seq * 3 for e in entries)
    await spool.aclose()


@pytest.mark.parametrize("sync", ["batch", "interval", "frame"])
async def test_concurrent_appends_across_rotations_get_one_seq_each(
    tmp_path: Path, sync: str
) -> None:
    """Many writers at once (webhook requests), segments rotating under them while an
    fsync runs: every seq once, every payload whole."""
    spool = await opened(tmp_path, segment_bytes=256, sync=sync, fsync_interval=0.001)

    async def write(i: int) -> int:
        seq = await spool.append(b"writer %d" % i)
        await spool.durable(seq)
        return seq

    seqs = await asyncio.gather(*(write(i) for i in range(200)))
    assert sorted(seqs) == list(range(1, 201))
    await spool.aclose()
    again = await opened(tmp_path)
    entries = again.entries(0, again.last_seq)
    assert [e.seq for e in entries] == list(range(1, 201))
    assert sorted(e.payload for e in entries) == sorted(b"writer %d" % i for i in range(200))
    await again.aclose()
