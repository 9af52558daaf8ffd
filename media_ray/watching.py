"""Recordings taken as they land in a folder or under an object-store prefix, each once.

What callers may rely on:

- `Watcher(source, ledger, config).poll()` lists the videos directly in `source` (a local
  folder, or `gs://BUCKET/PREFIX/`, by `media_ray.sources.VIDEO_SUFFIXES`) and returns those to
  analyse now: the ones whose size and version (a file's modification time, an object's
  generation) have stayed the same over `settle_s` of polls, and that the ledger does not hold
  with that same size and version. A file still being written keeps changing, so it is taken
  only once it has stopped growing for `settle_s`; an object is only listed once its upload is
  complete, and settles the same way.
- The `Ledger` is a JSON-lines file (in the output folder) with one record per file taken: its
  URI, size and version, the output folder name and how the analysis went. A file recorded with
  its current size and version is never taken again, by this watcher or by one started later
  on the same ledger; a file rewritten since (another size or version) is taken again, into
  the same output folder.
- Nothing here imports Ray or analyses anything: the driver (`media_ray.app.watch`) does that,
  on one runtime kept up for the whole watch.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field

from media_ray.cloud_storage import store_for
from media_ray.sources import SourceError, videos_in

log = logging.getLogger(__name__)


class WatchConfig(BaseModel):
    """`media-ray watch`: how a folder (or object prefix) of recordings is followed."""

    model_config = ConfigDict(extra="forbid")

    poll_s: float = Field(5.0, gt=0, description="how often the folder is listed")
    settle_s: float = Field(
        10.0,
        ge=0,
        description="how long a file's size and modification time (an object's generation) must stay "
        "the same before it is taken: longer than the longest pause of whatever writes the recordings",
    )
    ledger: str = Field(
        "watch-ledger.jsonl",
        description="the file, in the output folder, that records each file analysed (with its size "
        "and version), so that a restarted watch takes none of them again",
    )


@dataclass(frozen=True)
class Landed:
    """A video found in the watched folder, as it was when listed."""

    uri: str
    size: int
    version: str  # a file's st_mtime_ns, an object's generation

    @property
    def fingerprint(self) -> tuple[str, int, str]:
        return (self.uri, self.size, self.version)

    @property
    def stem(self) -> str:
        return Path(urlparse(self.uri).path if "://" in self.uri else self.uri).stem or "video"


def check_source(source: str) -> None:
    """That `source` can be watched: a folder that exists, or a prefix in a bucket that exists
    (SourceError, one line, otherwise)."""
    store = store_for(source)
    if store is not None:
        store.check_folder(source)
    elif not Path(source).is_dir():
        raise SourceError(f"{source}: not a folder (watch takes a folder or gs://BUCKET/PREFIX/)")


def list_landed(source: str) -> list[Landed]:
    """The videos directly in `source`, in name order, with their size and version now."""
    store = store_for(source)
    if store is not None:
        return [Landed(o.uri, o.size, o.version) for o in store.list(source)]
    landed = []
    for path in videos_in(source):
        try:
            st = path.stat()
        except FileNotFoundError:  # gone between the listing and now
            continue
        landed.append(Landed(str(path), st.st_size, str(st.st_mtime_ns)))
    return landed


class Settler:
    """Which of the files listed have stayed the same for `settle_s`."""

    def __init__(self, settle_s: float, clock: Callable[[], float] = time.monotonic):
        self.settle_s = settle_s
        self.clock = clock
        self._since: dict[str, tuple[tuple[int, str], float]] = {}

    def update(self, landed: list[Landed]) -> list[Landed]:
        """Note what a listing shows; returns the files unchanged for `settle_s` or more."""
        now = self.clock()
        ready = []
        for item in landed:
            state = (item.size, item.version)
            seen = self._since.get(item.uri)
            if seen is None or seen[0] != state:
                self._since[item.uri] = (state, now)
                if self.settle_s > 0:
                    continue
            elif now - seen[1] < self.settle_s:
                continue
            ready.append(item)
        listed = {item.uri for item in landed}
        for uri in [u for u in self._since if u not in listed]:
            del self._since[uri]
        return ready


class Ledger:
    """What was taken, kept in a JSON-lines file that outlives the watcher."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._done: set[tuple[str, int, str]] = set()
        self._names: dict[str, str] = {}  # URI -> its output folder's name
        if self.path.exists():
            self._read()

    def _read(self) -> None:
        for n, line in enumerate(self.path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                fingerprint = (str(entry["source"]), int(entry["size"]), str(entry["version"]))
                name = str(entry["output"])
            except (ValueError, KeyError, TypeError):
                log.warning("%s:%d: not a ledger record, ignored", self.path, n)
                continue
            self._done.add(fingerprint)
            self._names[fingerprint[0]] = name

    def __len__(self) -> int:
        return len(self._done)

    def holds(self, item: Landed) -> bool:
        """Whether `item`, as it is now, was taken before."""
        return item.fingerprint in self._done

    def name_for(self, item: Landed) -> str:
        """The output folder's name of a file: the one it had, else its stem, made unique."""
        if item.uri in self._names:
            return self._names[item.uri]
        used = set(self._names.values())
        name, k = item.stem, 1
        while name in used:
            k += 1
            name = f"{item.stem}-{k}"
        self._names[item.uri] = name
        return name

    def record(self, item: Landed, status: str, error: str | None = None, **about: object) -> None:
        """Note that `item` was taken and how it went (`status`: done or failed); written to
        disk before this returns."""
        entry = {
            "source": item.uri,
            "size": item.size,
            "version": item.version,
            "output": self.name_for(item),
            "status": status,
            "error": error,
            "at": round(time.time(), 3),
            **about,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._done.add(item.fingerprint)


class Watcher:
    """Follows one folder: each `poll()` gives the files to take now (see the module's doc)."""

    def __init__(self, source: str, ledger: Ledger, config: WatchConfig, clock: Callable[[], float] = time.monotonic):
        self.source = source
        self.ledger = ledger
        self.settler = Settler(config.settle_s, clock)
        self._taken: set[tuple[str, int, str]] = set()
        #: after each poll: the videos listed, and of them those the ledger holds as they are now
        self.listed = 0
        self.known = 0

    def poll(self) -> list[Landed]:
        landed = list_landed(self.source)
        fresh = [item for item in landed if not self.ledger.holds(item)]
        self.listed, self.known = len(landed), len(landed) - len(fresh)
        ready = [item for item in self.settler.update(fresh) if item.fingerprint not in self._taken]
        self._taken.update(item.fingerprint for item in ready)
        return ready
