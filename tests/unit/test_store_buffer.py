"""The store write buffer (`BufferedStore`) and follow cursors, without Ray: writes made while the
store does not answer are written later, in order, exactly once; a follower resumes after any
record's cursor. Against an in-process MemoryStore that is switched off, and a real redis-server
stopped and started again under the writer."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time

import pytest

from media_ray.store import OLDEST, MemoryStore, StoreUnavailable
from media_ray.store_buffer import BufferedStore


class Outage(MemoryStore):
    """A MemoryStore whose writes fail as a lost server's do while `down`."""

    def __init__(self, history: int = 1000):
        super().__init__(history)
        self.down = False

    async def append(self, stream_id, records):
        if self.down:
            raise StoreUnavailable("switched off")
        await super().append(stream_id, records)

    async def put_meta(self, stream_id, meta):
        if self.down:
            raise StoreUnavailable("switched off")
        await super().put_meta(stream_id, meta)


def recs(first: int, n: int) -> list[dict]:
    return [{"t": i / 10, "frame": i} for i in range(first, first + n)]


def test_writes_during_an_outage_are_written_after_it_in_order_once():
    async def run():
        inner = Outage()
        store = BufferedStore(inner, max_pending=100)
        await store.append("s", recs(0, 3))
        inner.down = True
        await store.append("s", recs(3, 4))
        await store.put_meta("s", {"n": 7})
        assert store.pending == 4 and not store.available
        assert await inner.history("s") == recs(0, 3)  # nothing of the outage yet
        assert await store.get_meta("s") == {"n": 7}  # the pending metadata is what a writer sees
        assert await inner.get_meta("s") is None
        assert await store.flush(timeout_s=0.2, every_s=0.05) is False
        inner.down = False
        await store.append("s", recs(7, 2))  # the next write flushes what waits, first
        assert await inner.history("s") == recs(0, 9)
        assert await inner.get_meta("s") == {"n": 7}
        assert store.pending == 0 and store.available and store.lost == 0

    asyncio.run(run())


def test_the_buffer_is_bounded_and_drops_its_oldest_records_counted():
    async def run():
        inner = Outage()
        inner.down = True
        store = BufferedStore(inner, max_pending=5)
        for first in range(0, 8, 2):
            await store.append("s", recs(first, 2))
        assert store.lost == 3 and store.pending == 5
        inner.down = False
        assert await store.flush()
        assert await inner.history("s") == recs(3, 5)

    asyncio.run(run())


def test_a_follower_resumes_exactly_after_any_cursor():
    async def run():
        store = MemoryStore(100)
        await store.append("s", recs(0, 10))
        entries, end = await store.follow_entries("s", OLDEST, timeout_s=0)
        assert [r for _, r in entries] == recs(0, 10) and end == entries[-1][0]
        for i, (cursor, _) in enumerate(entries):
            rest, _ = await store.follow_entries("s", cursor, timeout_s=0)
            assert [r for _, r in rest] == recs(i + 1, 9 - i)
        assert await store.last("s") == recs(9, 1)[0]
        with pytest.raises(ValueError):
            await store.follow_entries("s", "x-1", timeout_s=0)

    asyncio.run(run())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redis(binary: str, port: int, folder) -> subprocess.Popen:
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("redis-server did not start")


def test_a_redis_restart_under_a_writer_loses_no_record_and_cursors_still_resume(tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    pytest.importorskip("redis")
    from media_ray.store import RedisStore

    port = _free_port()
    proc = _redis(binary, port, tmp_path)

    async def run():
        nonlocal proc
        redis_store = RedisStore(f"redis://127.0.0.1:{port}/0", history=1000)
        store = BufferedStore(redis_store, max_pending=1000)
        await store.append("s", recs(0, 5))
        seen, cursor = await store.follow_entries("s", OLDEST, timeout_s=0)
        proc.terminate()
        proc.wait(timeout=20)
        for first in range(5, 15, 2):
            await store.append("s", recs(first, 2))
        await store.put_meta("s", {"state": "live"})
        assert store.pending == 10
        with pytest.raises(StoreUnavailable):
            await redis_store.follow_entries("s", cursor, timeout_s=0)
        proc = _redis(binary, port, tmp_path)
        assert await store.flush(timeout_s=20, every_s=0.1)
        assert await redis_store.history("s") == recs(0, 15)
        assert await redis_store.get_meta("s") == {"state": "live"}
        rest, _ = await redis_store.follow_entries("s", cursor, timeout_s=0)
        assert [r for _, r in seen] + [r for _, r in rest] == recs(0, 15)
        await store.close()

    try:
        asyncio.run(run())
    finally:
        proc.terminate()
        proc.wait(timeout=20)
