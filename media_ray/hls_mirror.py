"""A stream's HLS playback copied to an object store (`gs://BUCKET/PREFIX/STREAM/`) as it is written.

What callers may rely on:

- `HlsMirror(folder, target)` copies what `HlsWriter` writes into `folder`: each segment the
  playlist lists, once, then the playlist itself as it was read, so that a player reading the
  remote playlist finds every segment it names. The playlist is sent with
  `Cache-Control: no-cache`, as it changes under one name while the stream runs.
- `changed()` (the writer calls it when the playlist may have changed) never blocks: the copy
  runs in a thread of its own, so the live analysis never waits on the network. An upload that
  fails is logged and tried again at the next change.
- `close(timeout_s)` makes a last copy (the ended playlist, with `#EXT-X-ENDLIST`) and waits
  for it at most `timeout_s`.
- The remote copy outlives the stream: deleting a stream removes its local folder only.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from media_ray.cloud_storage import StorageError, join_uri, store_for

log = logging.getLogger(__name__)

PLAYLIST = "index.m3u8"
_TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t"}


class HlsMirror:
    def __init__(self, folder: str | Path, target: str):
        store = store_for(target)
        if store is None:
            raise StorageError(f"{target}: not an object-store URI (gs://BUCKET/PREFIX/)")
        self.store = store
        self.folder = Path(folder)
        self.target = target
        #: segments copied so far, and uploads that failed
        self.sent: set[str] = set()
        self.failures = 0
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="media-ray-hls-mirror", daemon=True)
        self._thread.start()

    def changed(self) -> None:
        self._wake.set()

    def close(self, timeout_s: float = 30.0) -> None:
        self._closing = True
        self._wake.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("%s: the last HLS upload did not end in %.0f s", self.target, timeout_s)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            closing = self._closing
            try:
                self.sync()
            except Exception as e:  # the copy must never stop the stream
                self.failures += 1
                log.warning("%s: HLS upload failed (%s); trying again at the next segment", self.target, e)
            if closing:
                return

    def sync(self) -> None:
        """Copy the segments the playlist lists that are not copied yet, then the playlist."""
        try:
            playlist = (self.folder / PLAYLIST).read_bytes()
        except FileNotFoundError:
            return
        names = [ln.strip() for ln in playlist.decode().splitlines() if ln.strip() and not ln.startswith("#")]
        for name in names:
            if name in self.sent or "/" in name:
                continue
            path = self.folder / name
            self.store.upload(path, join_uri(self.target, name), _TYPES.get(path.suffix))
            self.sent.add(name)
        self.store.upload_bytes(playlist, join_uri(self.target, PLAYLIST), _TYPES[".m3u8"], "no-cache")
        log.debug("%s: %d segments copied", self.target, len(self.sent))
