"""Handing frames between threads, and waiting between retries.

- `DropOldestBuffer`: a bounded, thread-safe FIFO whose `put` never blocks. When it is full the
  oldest item is dropped and counted in `dropped`, so what a slow consumer gets stays close to
  live. After `close()`, `put` is ignored and `get_batch` hands out what is left, then empty
  lists at once, so a consumer knows the producer is done when it drains a closed buffer.
- `Backoff`: exponential delays between reconnects, configured by `BackoffConfig`, which is the
  one source of its defaults (`Backoff()` and `Backoff.from_config(BackoffConfig())` wait the
  same).
"""

from __future__ import annotations

import random
import threading
from collections import deque
from typing import Any

from pydantic import BaseModel, Field


class DropOldestBuffer:
    """A bounded, thread-safe FIFO. `put` never blocks: when full, the oldest item is dropped
    and counted in `dropped`. After `close()`, `put` is ignored and `get_batch` hands out what
    is left, then empty lists without waiting."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._items: deque = deque()
        self._cond = threading.Condition()
        self._dropped = 0
        self._closed = False

    def put(self, item: Any) -> None:
        with self._cond:
            if self._closed:
                return
            if len(self._items) >= self.capacity:
                self._items.popleft()
                self._dropped += 1
            self._items.append(item)
            self._cond.notify()

    def get_batch(self, max_items: int, timeout_s: float | None = None) -> list:
        """Up to `max_items` items, oldest first; waits up to `timeout_s` (None: without limit)
        for the first one. Empty on timeout, or when closed and drained."""
        with self._cond:
            self._cond.wait_for(lambda: self._items or self._closed, timeout_s)
            n = min(max_items, len(self._items))
            return [self._items.popleft() for _ in range(n)]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def dropped(self) -> int:
        with self._cond:
            return self._dropped

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class BackoffConfig(BaseModel):
    """Delays between reconnects to a source that dropped or could not be opened: `initial_s`,
    then each `factor` times the one before, up to `max_s`; the count starts again once the
    source is live."""

    initial_s: float = Field(0.5, gt=0, description="seconds to wait before the first reconnect")
    factor: float = Field(
        2.0,
        ge=1,
        description="each further wait is this many times the one before (1: always wait initial_s)",
    )
    max_s: float = Field(30.0, gt=0, description="the longest wait between reconnects, in seconds")
    jitter: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="each wait varies at random by up to this "
        "fraction of itself, so that streams that dropped together do not all "
        "reconnect at once (0: exact waits)",
    )


_DEFAULTS = BackoffConfig()


class Backoff:
    """Exponential delays: initial, initial*factor, ... capped at max_s, each varied by up to
    +-jitter of itself (0: exact, for tests). The defaults are `BackoffConfig`'s."""

    def __init__(
        self,
        initial_s: float = _DEFAULTS.initial_s,
        factor: float = _DEFAULTS.factor,
        max_s: float = _DEFAULTS.max_s,
        jitter: float = _DEFAULTS.jitter,
    ):
        self.initial_s, self.factor, self.max_s, self.jitter = initial_s, factor, max_s, jitter
        self._n = 0

    @classmethod
    def from_config(cls, c: BackoffConfig) -> Backoff:
        return cls(c.initial_s, c.factor, c.max_s, c.jitter)

    def next_delay(self) -> float:
        delay = min(self.max_s, self.initial_s * self.factor**self._n)
        self._n += 1
        if self.jitter:
            delay *= 1.0 + random.uniform(-self.jitter, self.jitter)
        return delay

    def reset(self) -> None:
        self._n = 0
