"""The results store: one specification, met by the embedded store (through its Ray actor) and
by the Redis store (against a real redis-server started here)."""

from __future__ import annotations

import asyncio
import functools
import shutil
import socket
import subprocess
import time
import uuid

import pytest

from actors.store import connect_store
from media_ray.config import StoreConfig
from media_ray.model import Detection, FrameResult
from media_ray.store import OLDEST

CAP = 20  # records kept per stream in these tests


def frames(start: int, count: int, fps: float = 2.0) -> list[dict]:
    """Frame records as the pipeline writes them, numbered from `start`."""
    return [
        FrameResult(
            t=i / fps,
            frame=i,
            width=640,
            height=360,
            detections=[Detection(label="acme", score=0.9, box=(1, 2, 30, 40), detector="clip")],
        ).record()
        for i in range(start, start + count)
    ]


def numbers(records: list[dict]) -> list[int]:
    return [r["frame"] for r in records]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A throwaway redis-server on a free local port, without persistence."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not on PATH (apt-get install redis-server; CI installs it)")
    import redis

    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None:
                    pytest.fail(f"redis-server exited with {proc.returncode} before answering")
                if time.monotonic() > deadline:
                    pytest.fail("redis-server did not answer PING within 15 s")
                time.sleep(0.05)
        yield url
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(params=["embedded", "redis"])
def open_store(request):
    """Opens a fresh, empty store of one kind: call it inside the test's event loop.

    Picklable, so a Ray task can open the same store in another process.
    """
    if request.param == "embedded":
        ray = request.getfixturevalue("local_ray")
        config = StoreConfig(kind="embedded", history=CAP)
        name = f"store-{uuid.uuid4().hex[:8]}"
        yield functools.partial(connect_store, config, name=name)
        try:
            ray.kill(ray.get_actor(name))
        except ValueError:  # never created
            pass
    else:
        import redis

        url = request.getfixturevalue("redis_url")
        with redis.Redis.from_url(url) as client:
            client.flushdb()
        config = StoreConfig(kind="redis", redis_url=url, history=CAP)
        yield functools.partial(connect_store, config)


def run(open_store, scenario, timeout_s: float = 30.0):
    """Runs `scenario(store)` on a fresh event loop, bounded in time, and closes the store."""

    async def main():
        store = open_store()
        try:
            return await asyncio.wait_for(scenario(store), timeout_s)
        finally:
            await store.close()

    return asyncio.run(main())


def test_history_is_in_time_order_and_pages_forward_with_since_and_limit(open_store):
    async def scenario(store):
        await store.append("s", frames(0, 6))
        await store.append("s", frames(6, 6))
        assert await store.history("s") == frames(0, 12)
        pages, since = [], None
        while page := await store.history("s", since=since, limit=5):
            pages.append(numbers(page))
            since = page[-1]["t"]
        assert pages == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]
        # since is exclusive
        assert numbers(await store.history("s", since=2.5)) == list(range(6, 12))
        assert await store.history("no-such-stream") == []

    run(open_store, scenario)


def test_the_cap_drops_the_oldest_records(open_store):
    async def scenario(store):
        await store.append("s", frames(0, CAP - 5))
        await store.append("s", frames(CAP - 5, 10))
        assert numbers(await store.history("s", limit=1000)) == list(range(5, CAP + 5))

    run(open_store, scenario)


def test_two_followers_each_receive_every_record_while_appends_continue(open_store):
    total = 3 * CAP  # more than the cap: followers that keep up lose nothing

    async def follower(store, cursor):
        got = []
        while len(got) < total:
            records, cursor = await store.follow("s", cursor, timeout_s=5)
            got += records
        return got

    async def scenario(store):
        await store.append("s", frames(0, 3))  # before the followers: not theirs
        _, now = await store.follow("s", None, timeout_s=0)
        followers = [asyncio.ensure_future(follower(store, now)) for _ in range(2)]
        await asyncio.sleep(0.2)  # both are waiting before the first append
        for start in range(3, 3 + total, 4):
            await store.append("s", frames(start, 4))
            await asyncio.sleep(0.02)
        return await asyncio.gather(*followers)

    first, second = run(open_store, scenario)
    assert numbers(first) == numbers(second) == list(range(3, 3 + total))


def test_follow_without_new_records_times_out_with_the_cursor_unchanged(open_store):
    async def scenario(store):
        await store.append("s", frames(0, 2))
        records, cursor = await store.follow("s", OLDEST, timeout_s=1)
        assert numbers(records) == [0, 1]
        started = time.monotonic()
        records, again = await store.follow("s", cursor, timeout_s=0.5)
        waited = time.monotonic() - started
        assert records == [] and again == cursor
        assert 0.4 < waited < 3
        # a stream nobody has written to yet: same
        assert (await store.follow("quiet", None, timeout_s=0.2))[0] == []

    run(open_store, scenario)


def test_a_follower_behind_the_cap_continues_from_the_oldest_kept(open_store):
    async def scenario(store):
        await store.append("s", frames(0, 1))
        records, cursor = await store.follow("s", OLDEST, timeout_s=1)
        assert numbers(records) == [0]
        await store.append("s", frames(1, CAP + 5))  # record 0 and the next 5 fall off
        records, cursor = await store.follow("s", cursor, timeout_s=1)
        assert numbers(records) == list(range(6, CAP + 6))
        await store.append("s", frames(CAP + 6, 1))
        records, _ = await store.follow("s", cursor, timeout_s=1)
        assert numbers(records) == [CAP + 6]

    run(open_store, scenario)


def test_follow_returns_at_most_limit_records_and_the_rest_next_time(open_store):
    async def scenario(store):
        await store.append("s", frames(0, 7))
        first, cursor = await store.follow("s", OLDEST, timeout_s=1, limit=5)
        rest, _ = await store.follow("s", cursor, timeout_s=1, limit=5)
        assert numbers(first) == [0, 1, 2, 3, 4] and numbers(rest) == [5, 6]

    run(open_store, scenario)


def test_meta_is_kept_and_streams_lists_every_stream_with_records_or_meta(open_store):
    async def scenario(store):
        assert await store.streams() == []
        assert await store.get_meta("a") is None
        await store.append("b", frames(0, 1))
        await store.put_meta("a", {"state": "live", "frames_dropped": 0})
        await store.put_meta("a", {"state": "ended", "report": {"acme": {"seconds": 1.5}}})
        assert await store.get_meta("a") == {"state": "ended", "report": {"acme": {"seconds": 1.5}}}
        assert await store.streams() == ["a", "b"]

    run(open_store, scenario)


def test_delete_removes_history_meta_and_the_stream(open_store):
    async def scenario(store):
        for sid in ("gone", "kept"):
            await store.append(sid, frames(0, 3))
            await store.put_meta(sid, {"state": "ended"})
        await store.delete("gone")
        await store.delete("never-was")
        assert await store.history("gone") == []
        assert await store.get_meta("gone") is None
        assert await store.streams() == ["kept"]
        assert numbers(await store.history("kept")) == [0, 1, 2]

    run(open_store, scenario)


def test_streams_are_independent(open_store):
    async def scenario(store):
        _, cursor_b = await store.follow("b", None, timeout_s=0)
        await store.append("a", frames(0, CAP + 3))
        await store.append("b", frames(100, 2))
        assert numbers(await store.history("a")) == list(range(3, CAP + 3))
        assert numbers(await store.history("b")) == [100, 101]
        records, _ = await store.follow("b", cursor_b, timeout_s=1)
        assert numbers(records) == [100, 101]
        await store.put_meta("a", {"state": "live"})
        assert await store.get_meta("b") is None

    run(open_store, scenario)


def _append_elsewhere(open_store, stream_id: str, records: list[dict]) -> None:
    async def append():
        store = open_store()
        try:
            await store.append(stream_id, records)
        finally:
            await store.close()

    asyncio.run(append())


def test_records_appended_by_another_ray_process_reach_this_ones_follower(open_store, local_ray):
    async def scenario(store):
        _, cursor = await store.follow("s", None, timeout_s=0)
        task = local_ray.remote(num_cpus=0)(_append_elsewhere).remote(open_store, "s", frames(0, 3))
        records, _ = await store.follow("s", cursor, timeout_s=20)
        await task
        return records

    assert numbers(run(open_store, scenario)) == [0, 1, 2]
