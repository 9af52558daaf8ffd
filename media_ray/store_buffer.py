"""A writer's results store that rides out a store going away for a while (a Redis restart).

`BufferedStore` wraps any `ResultStore`. Appends that fail with `StoreUnavailable` are kept,
per stream and in order, and written (before anything newer) on the next write that finds the
store answering again, or by `flush`. Metadata that fails to be written is kept too (the newest
only) and written after the stream's pending records, so a stream's metadata never runs ahead
of its records. The buffer is bounded: beyond `max_pending` records per stream the oldest
pending ones are dropped, counted in `lost` and logged. Reads go straight to the wrapped store.

Meant for one writer per stream (a LiveIngest): writes of one BufferedStore are serialised.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from typing import Any

from media_ray.store import Entries, ResultStore, StoreUnavailable

log = logging.getLogger(__name__)


class BufferedStore(ResultStore):
    """See the module docstring. `chunk` records are written per call while flushing."""

    def __init__(self, inner: ResultStore, max_pending: int, chunk: int = 256):
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.inner = inner
        self.max_pending = max_pending
        self.chunk = max(1, chunk)
        self.lost = 0  # records dropped because the buffer was full
        self._records: dict[str, deque[dict[str, Any]]] = {}
        self._meta: dict[str, dict[str, Any]] = {}
        self._down: str | None = None  # why the store is unavailable, while it is
        self._lock: asyncio.Lock | None = None

    @property
    def pending(self) -> int:
        """Records waiting to be written, all streams together."""
        return sum(len(q) for q in self._records.values())

    @property
    def available(self) -> bool:
        """False from a failed write until a write succeeds again."""
        return self._down is None

    # -- writes ------------------------------------------------------------------------
    async def append(self, stream_id: str, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        queue = self._records.setdefault(stream_id, deque())
        queue.extend(records)
        overflow = len(queue) - self.max_pending
        if overflow > 0:
            for _ in range(overflow):
                queue.popleft()
            self.lost += overflow
            log.warning(
                "stream %s: the store is unavailable and %d records are waiting: the %d oldest are dropped",
                stream_id,
                self.max_pending,
                overflow,
            )
        await self._flush(stream_id)

    async def put_meta(self, stream_id: str, meta: dict[str, Any]) -> None:
        self._meta[stream_id] = dict(meta)
        await self._flush(stream_id)

    async def flush(self, timeout_s: float = 0.0, every_s: float = 0.5) -> bool:
        """Write what is pending, retrying for up to `timeout_s`; True if nothing is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            done = True
            for sid in list(set(self._records) | set(self._meta)):
                done = await self._flush(sid) and done
            if done or loop.time() >= deadline:
                return done
            await asyncio.sleep(every_s)

    async def _flush(self, stream_id: str) -> bool:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            try:
                await self._write(stream_id)
            except StoreUnavailable as e:
                if self._down is None:
                    log.warning("results store unavailable (%s): keeping writes to retry", e)
                self._down = str(e)
                return False
        if self._down is not None:
            log.info("results store answers again: pending writes flushed")
            self._down = None
        return True

    async def _write(self, stream_id: str) -> None:
        queue = self._records.get(stream_id)
        while queue:
            chunk = list(itertools.islice(queue, 0, self.chunk))
            await self.inner.append(stream_id, chunk)
            for _ in chunk:
                queue.popleft()
        self._records.pop(stream_id, None)
        meta = self._meta.get(stream_id)
        if meta is not None:
            await self.inner.put_meta(stream_id, meta)
            if self._meta.get(stream_id) is meta:
                del self._meta[stream_id]

    # -- reads and the rest: the wrapped store's ------------------------------------------------
    async def history(self, stream_id: str, since: float | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        return await self.inner.history(stream_id, since, limit)

    async def follow_entries(
        self, stream_id: str, cursor: str | None = None, timeout_s: float = 15.0, limit: int = 1000
    ) -> tuple[Entries, str]:
        return await self.inner.follow_entries(stream_id, cursor, timeout_s, limit)

    async def last(self, stream_id: str) -> dict[str, Any] | None:
        queue = self._records.get(stream_id)
        return queue[-1] if queue else await self.inner.last(stream_id)

    async def get_meta(self, stream_id: str) -> dict[str, Any] | None:
        pending = self._meta.get(stream_id)
        return dict(pending) if pending is not None else await self.inner.get_meta(stream_id)

    async def streams(self) -> list[str]:
        return await self.inner.streams()

    async def delete(self, stream_id: str) -> None:
        self._records.pop(stream_id, None)
        self._meta.pop(stream_id, None)
        await self.inner.delete(stream_id)

    async def close(self) -> None:
        await self.inner.close()
