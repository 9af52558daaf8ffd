"""Where frame records of live streams are kept, read back and followed.

A `ResultStore` holds, per stream, the last `history` frame records (`FrameResult.record()`,
appended in time order) and a small JSON metadata dict (state, report), so the results of a
finished stream stay queryable until it is deleted. Readers either page through the history by
time (`history`) or follow new records with a long poll (`follow`): every follower of a stream
gets every record, and a follower that falls behind never slows appends, it continues from the
oldest record still kept.

Two backends, chosen by `StoreConfig.kind` through `make_store`:

- `embedded`: `MemoryStore`, in this process. The running system shares one between the
  ingest actors and the API, so there it lives inside a Ray actor (`actors.store.connect_store`);
  `make_store("embedded")` is what that actor calls, and what a notebook or a test may use alone.
- `redis`: `RedisStore`, one capped Redis stream per media-ray stream.

All methods are coroutines. A cursor is an opaque string; `OLDEST` starts from the oldest
record kept, None from the next record appended. `follow_entries` gives each record's own
cursor (what a follower that reconnects passes to resume right after it).

A store that cannot be reached raises `StoreUnavailable`. A writer that must not lose records
when the store goes away for a while (a Redis restart) wraps it in a `BufferedStore`: failed
appends are kept in order, within a bound, and written when the store answers again.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import json
import logging
import re
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from media_ray.config import StoreConfig

log = logging.getLogger(__name__)

#: a cursor that starts a follower at the oldest record still kept, in every backend
OLDEST = "0"

#: Redis stream entries as a client with `decode_responses` reads them: (entry id, fields)
_Entries = list[tuple[str, dict[str, str]]]


class StoreUnavailable(ConnectionError):
    """The store could not be reached (a connection refused or lost); the call may be retried."""


#: the entries of a follow: (cursor of the record, record), oldest first
Entries = list[tuple[str, dict[str, Any]]]


class ResultStore(ABC):
    """Frame records and metadata per stream; see the module docstring for the guarantees."""

    @abstractmethod
    async def append(self, stream_id: str, records: list[dict[str, Any]]) -> None:
        """Adds records (in time order, after those already there); the oldest beyond the cap go."""

    @abstractmethod
    async def history(self, stream_id: str, since: float | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """The first `limit` records with `t > since` (all when None), oldest first.

        Paging forward: pass the last page's last `t` as `since`.
        """

    async def follow(
        self, stream_id: str, cursor: str | None = None, timeout_s: float = 15.0, limit: int = 1000
    ) -> tuple[list[dict[str, Any]], str]:
        """Records appended after `cursor`, oldest first, and the cursor to pass next time.

        Waits up to `timeout_s` for at least one; on timeout returns no records and the cursor
        unchanged (None resolved to the current end, so `timeout_s=0` just fetches a cursor).
        A cursor older than the oldest record kept continues from the oldest kept.
        """
        entries, cursor = await self.follow_entries(stream_id, cursor, timeout_s, limit)
        return [record for _, record in entries], cursor

    @abstractmethod
    async def follow_entries(
        self, stream_id: str, cursor: str | None = None, timeout_s: float = 15.0, limit: int = 1000
    ) -> tuple[Entries, str]:
        """As `follow`, with each record's own cursor: (cursor, record) pairs, and the next cursor.
        A cursor that is not one of this store's raises ValueError."""

    @abstractmethod
    async def last(self, stream_id: str) -> dict[str, Any] | None:
        """The newest record kept of the stream, None if it has none."""

    @abstractmethod
    async def put_meta(self, stream_id: str, meta: dict[str, Any]) -> None:
        """Replaces the stream's metadata (a JSON-serialisable dict)."""

    @abstractmethod
    async def get_meta(self, stream_id: str) -> dict[str, Any] | None:
        """The stream's metadata, None if it has none."""

    @abstractmethod
    async def streams(self) -> list[str]:
        """Ids of the streams with records or metadata, sorted."""

    @abstractmethod
    async def delete(self, stream_id: str) -> None:
        """Removes the stream's records and metadata; a stream that does not exist is no error."""

    async def close(self) -> None:  # noqa: B027 (a store with nothing to release keeps it)
        """Releases connections; the stored data is not affected."""


class _Stream:
    """One stream's state in a MemoryStore."""

    def __init__(self, history: int):
        self.entries: deque[tuple[int, dict[str, Any]]] = deque(maxlen=history)  # (seq, record)
        self.meta: dict[str, Any] | None = None
        # replaced on every append; followers wait on the one current when they looked
        self.appended = asyncio.Event()

    def wake(self) -> None:
        woken, self.appended = self.appended, asyncio.Event()
        woken.set()


class MemoryStore(ResultStore):
    """In-process store: a bounded deque per stream, cursors are store-wide sequence numbers.

    Records are kept as given (not copied): callers must not change them after `append`.
    Belongs to one event loop (the one that first waits in `follow`).
    """

    def __init__(self, history: int):
        if history < 1:
            raise ValueError("history must be at least 1")
        self.cap = history
        self._streams: dict[str, _Stream] = {}
        # store-wide, so a cursor stays meaningful when a stream is deleted and started again
        self._seq = itertools.count(1)
        self._last_seq = 0

    def _stream(self, stream_id: str) -> _Stream:
        if stream_id not in self._streams:
            self._streams[stream_id] = _Stream(self.cap)
        return self._streams[stream_id]

    async def append(self, stream_id: str, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        stream = self._stream(stream_id)
        for record in records:
            self._last_seq = next(self._seq)
            stream.entries.append((self._last_seq, record))
        log.debug("stream %s: %d records appended", stream_id, len(records))
        stream.wake()

    async def history(self, stream_id: str, since: float | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        stream = self._streams.get(stream_id)
        if stream is None or limit <= 0:
            return []
        start = 0 if since is None else bisect.bisect_right(stream.entries, since, key=lambda e: e[1]["t"])
        return [record for _, record in itertools.islice(stream.entries, start, start + limit)]

    async def follow_entries(
        self, stream_id: str, cursor: str | None = None, timeout_s: float = 15.0, limit: int = 1000
    ) -> tuple[Entries, str]:
        after = self._last_seq if cursor is None else _sequence(cursor)
        deadline = time.monotonic() + timeout_s
        while True:
            stream = self._stream(stream_id)
            newer = _entries_after(stream.entries, after, limit)
            if newer:
                return [(str(seq), record) for seq, record in newer], str(newer[-1][0])
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return [], str(after)
            try:
                await asyncio.wait_for(stream.appended.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def last(self, stream_id: str) -> dict[str, Any] | None:
        stream = self._streams.get(stream_id)
        return stream.entries[-1][1] if stream is not None and stream.entries else None

    async def put_meta(self, stream_id: str, meta: dict[str, Any]) -> None:
        self._stream(stream_id).meta = dict(meta)

    async def get_meta(self, stream_id: str) -> dict[str, Any] | None:
        stream = self._streams.get(stream_id)
        return None if stream is None or stream.meta is None else dict(stream.meta)

    async def streams(self) -> list[str]:
        return sorted(sid for sid, s in self._streams.items() if s.entries or s.meta is not None)

    async def delete(self, stream_id: str) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            stream.wake()  # waiting followers look again and find a new, empty stream
            log.info("stream %s: deleted from the store", stream_id)


def _sequence(cursor: str) -> int:
    """A MemoryStore cursor: a sequence number (a Redis-style id `N-0` is read as N)."""
    head, _, tail = cursor.partition("-")
    if not head.isdigit() or len(head) > 20 or tail not in ("", "0"):
        raise ValueError(f"not a cursor of this store: {cursor[:40]!r}")
    return int(head)


def _entries_after(entries: deque, after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
    """The first `limit` entries with a sequence number above `after`."""
    # scanned from the newest end: a follower that keeps up costs only what is new
    newer = []
    for entry in reversed(entries):
        if entry[0] <= after:
            break
        newer.append(entry)
    newer.reverse()
    return newer[:limit]


class RedisStore(ResultStore):
    """One Redis stream per media-ray stream, capped exactly at `history` entries.

    Keys: `{prefix}:frames:{id}` (the stream; one JSON field per entry), `{prefix}:meta:{id}`
    (JSON string) and `{prefix}:streams` (a set of ids). Cursors are Redis entry ids. A blocked
    `follow` holds one pooled connection for its duration.
    """

    def __init__(self, url: str, history: int, prefix: str = "media-ray"):
        try:
            import redis.asyncio as aioredis
        except ImportError as e:  # an optional dependency: pip install 'media-ray[redis]'
            raise ImportError("the Redis store needs the redis package (pip install 'media-ray[redis]')") from e
        if history < 1:
            raise ValueError("history must be at least 1")
        import redis.exceptions

        self.cap = history
        self.prefix = prefix
        # a read that waits longer is a lost server; a blocking follow waits less (see follow_entries)
        self._redis = aioredis.from_url(url, decode_responses=True, socket_timeout=_SOCKET_TIMEOUT_S)
        #: what a lost server raises (BusyLoadingError, while it reads its data back, is one)
        self._lost = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
        self._refused = redis.exceptions.ResponseError

    @contextlib.contextmanager
    def _reached(self, what: str):
        """Raises StoreUnavailable for a server that cannot be reached."""
        try:
            yield
        except self._lost as e:
            raise StoreUnavailable(f"redis ({what}): {e}") from e

    @classmethod
    def from_config(cls, config: StoreConfig) -> RedisStore:
        return cls(config.redis_url, config.history)

    def _frames(self, stream_id: str) -> str:
        return f"{self.prefix}:frames:{stream_id}"

    def _meta(self, stream_id: str) -> str:
        return f"{self.prefix}:meta:{stream_id}"

    @property
    def _ids(self) -> str:
        return f"{self.prefix}:streams"

    async def append(self, stream_id: str, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        key = self._frames(stream_id)
        with self._reached("append"):
            async with self._redis.pipeline(transaction=True) as pipe:
                for record in records:
                    pipe.xadd(key, {"record": json.dumps(record)}, maxlen=self.cap, approximate=False)
                pipe.sadd(self._ids, stream_id)
                await pipe.execute()
        log.debug("stream %s: %d records appended", stream_id, len(records))

    async def history(self, stream_id: str, since: float | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        key = self._frames(stream_id)
        found: list[dict[str, Any]] = []
        start = "-"
        # records are in time order: skip those up to `since`, stop once `limit` are found
        while len(found) < limit:
            with self._reached("history"):
                chunk = cast(_Entries, await self._redis.xrange(key, start, "+", count=max(limit, 256)))
            for _, fields in chunk:
                record = json.loads(fields["record"])
                if since is None or record["t"] > since:
                    found.append(record)
                    if len(found) == limit:
                        break
            if len(chunk) < max(limit, 256):
                break
            start = "(" + chunk[-1][0]
        return found

    async def follow_entries(
        self, stream_id: str, cursor: str | None = None, timeout_s: float = 15.0, limit: int = 1000
    ) -> tuple[Entries, str]:
        key = self._frames(stream_id)
        if cursor is not None and not _REDIS_ID.match(cursor):
            raise ValueError(f"not a cursor of this store: {cursor[:40]!r}")
        with self._reached("follow"):
            if cursor is None:
                # '$' would lose what is appended between two calls; resolve it to an id once
                last = cast(_Entries, await self._redis.xrevrange(key, "+", "-", count=1))
                cursor = last[0][0] if last else OLDEST
            # a block as long as the socket's time-out would read as a lost server
            block = None if timeout_s <= 0 else max(1, int(min(timeout_s, _SOCKET_TIMEOUT_S - 2) * 1000))
            try:
                reply = await self._redis.xread({key: cursor}, count=limit, block=block)
            except self._refused as e:  # an id out of range
                raise ValueError(f"not a cursor of this store: {e}") from None
        entries = _stream_entries(reply, key)
        if not entries:
            return [], cursor
        return [(entry_id, json.loads(fields["record"])) for entry_id, fields in entries], entries[-1][0]

    async def last(self, stream_id: str) -> dict[str, Any] | None:
        with self._reached("last"):
            newest = cast(_Entries, await self._redis.xrevrange(self._frames(stream_id), "+", "-", count=1))
        return json.loads(newest[0][1]["record"]) if newest else None

    async def put_meta(self, stream_id: str, meta: dict[str, Any]) -> None:
        with self._reached("put_meta"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self._meta(stream_id), json.dumps(meta))
                pipe.sadd(self._ids, stream_id)
                await pipe.execute()

    async def get_meta(self, stream_id: str) -> dict[str, Any] | None:
        with self._reached("get_meta"):
            raw = await self._redis.get(self._meta(stream_id))
        return None if raw is None else json.loads(raw)

    async def streams(self) -> list[str]:
        with self._reached("streams"):
            return sorted(cast(set[str], await self._redis.smembers(self._ids)))

    async def delete(self, stream_id: str) -> None:
        with self._reached("delete"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._frames(stream_id), self._meta(stream_id))
                pipe.srem(self._ids, stream_id)
                await pipe.execute()
        log.info("stream %s: deleted from the store", stream_id)

    async def close(self) -> None:  # noqa: B027 (a store with nothing to release keeps it)
        await self._redis.aclose()


#: seconds a Redis reply may take before the server counts as lost (redis-py's default is 5)
_SOCKET_TIMEOUT_S = 10.0

#: a Redis stream entry id, as a cursor
_REDIS_ID = re.compile(r"^[0-9]{1,20}(-[0-9]{1,20})?$")


def _stream_entries(reply: Any, key: str) -> list:
    """The entries of one stream in an XREAD reply (a list of pairs in RESP2, a dict in RESP3)."""
    if not reply:
        return []
    if isinstance(reply, dict):  # RESP3: {key: [entries]}
        return (reply.get(key) or [[]])[0]
    return next((entries for name, entries in reply if name == key), [])


#: store kind (StoreConfig.kind) -> factory
STORES: dict[str, Callable[[StoreConfig], ResultStore]] = {
    "embedded": lambda config: MemoryStore(config.history),
    "redis": RedisStore.from_config,
}


def make_store(config: StoreConfig) -> ResultStore:
    """A store of the configured kind, in this process.

    An `embedded` store made here is private to this process; code that shares results
    between processes (ingest actors, the API) uses `actors.store.connect_store` instead.
    """
    return STORES[config.kind](config)
