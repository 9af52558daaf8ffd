"""LiveIngest: one live stream, from its source to the results store.

A `LiveSource` thread (or the webcam's pushed JPEGs) fills a bounded buffer that drops its
oldest frames when the detectors fall behind; the actor's event loop takes FrameBatches from
it, puts them in the object store, sends them to the stream's detectors (a bounded number in
flight), and appends the results, in time order, to the results store, where the WebSocket
fan-out reads them. Dropped frames are counted and shown in the stream's status. What comes
back passes through the stream's `StageChain` (merge, exposure; tracking with `tracking.live`),
the chain every runner uses.

Faults: a batch whose detector call fails (its replica killed mid-call, or the detector's own
error, which is logged with its cause) is lost, counted in `batches_lost`/`frames_lost`, and the
stream goes on; later batches wait for the deployment to have a replica again. Writes to a
store that does not answer (a Redis restart) are kept in order and written when it answers
(`BufferedStore`). An ingest started again for a stream whose ingest died (`resume`) continues
its times and frame indices after the last record stored, so records are never duplicated.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from pathlib import Path

import cv2
import numpy as np
import ray
from ray.serve.handle import DeploymentHandle

from actors.metrics import StreamMetrics
from actors.store import connect_store
from media_ray.buffering import DropOldestBuffer
from media_ray.catalog import BrandCatalog
from media_ray.chain import StageChain
from media_ray.cloud_storage import join_uri
from media_ray.config import MediaRayConfig
from media_ray.hls import HlsWriter
from media_ray.hls_mirror import HlsMirror
from media_ray.live import LiveSource
from media_ray.model import FrameBatch, FrameResult
from media_ray.shots import ShotCutFinder
from media_ray.sources import DecodedFrame, source_kind
from media_ray.store_buffer import BufferedStore
from media_ray.streams import StreamState, StreamStatus

log = logging.getLogger(__name__)


def _mirror(hls_dir: str, config: MediaRayConfig) -> HlsMirror | None:
    """The copy of a stream's HLS folder under `live.hls_upload`, named as the folder (the stream's id)."""
    if not config.live.hls_upload:
        return None
    return HlsMirror(hls_dir, join_uri(config.live.hls_upload, Path(hls_dir).name))


@ray.remote
class LiveIngest:
    def __init__(
        self,
        status: StreamStatus,
        uri: str | None,
        config: MediaRayConfig,
        detectors: dict[str, DeploymentHandle],
        catalog: BrandCatalog,
        hls_dir: str | None,
        resume: dict | None = None,
    ):
        """`resume`: where a stream whose ingest died got to: `t` and `frame` of its last record
        stored, `source_t` (its source time, where known)."""
        self.status = status
        self.uri = uri
        self.config = config
        self.detectors = detectors
        self.catalog_version = catalog.version
        self.buffer = DropOldestBuffer(config.live.queue_frames)  # the webcam's; a source has its own
        self.chain = StageChain.for_live(config, catalog, status.fps)
        self.shots = ShotCutFinder(config.shots)  # the stream's frames, batch after batch
        self.store = BufferedStore(
            connect_store(config.store, namespace=config.ray.namespace), config.store.write_buffer
        )
        self.resume = resume
        # counts of the ingests before this one (a restarted stream goes on counting)
        self._base = (status.frames_received, status.frames_dropped)
        self._last_t = float(resume["t"]) if resume else -1.0  # of the last record stored
        self.hls = (
            HlsWriter(Path(hls_dir), config.live.hls_segment_s, mirror=_mirror(hls_dir, config)) if hls_dir else None
        )
        self.source: LiveSource | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._source_done = asyncio.Event()
        self._final: tuple[str, str | None] | None = None  # the source's last state, set once drained
        self._seq = 0
        self._webcam_t0: float | None = None
        self._webcam_index = 0
        self._last_meta = 0.0
        self._task: asyncio.Task | None = None
        self.metrics = StreamMetrics(status.id)
        self._batches_out = 0  # sent to the detectors, not back yet

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> dict:
        self._loop = asyncio.get_running_loop()
        if self.uri is not None:
            scheme, kind = source_kind(self.uri)
            # files, local or over http(s), and VOD playlists are played as live: paced by their
            # own timestamps, so the detectors see them as a live viewer would
            cfg = self.config.live.source.model_copy(
                update={
                    "fps": self.status.fps,
                    "buffer_size": self.config.live.queue_frames,
                    "realtime": kind.is_file or scheme in self.config.live.paced_schemes,
                }
            )
            self.source = LiveSource(
                self.uri,
                cfg,
                on_state=self._on_state_threadsafe,
                hls=self.hls,
                publisher_patience_s=self.config.live.rtmp_patience_s,
            )
            if self.resume:
                self.source.resume_after(self.resume["t"], int(self.resume["frame"]), self.resume.get("source_t"))
            self.buffer = self.source.buffer
            self.source.start()
        else:  # webcam: frames arrive through push_jpeg
            if self.resume:
                self._webcam_index = int(self.resume["frame"]) + 1
                self._webcam_t0 = time.time() - self._last_t - 1e-3
            self._set_state(StreamState.LIVE.value, None)
        self._task = asyncio.ensure_future(self._dispatch())
        await self._save_meta(force=True)
        return self.status.model_dump()

    async def stop(self) -> dict:
        if self.source is not None:
            await asyncio.to_thread(self.source.stop)
        self._source_done.set()
        self.buffer.close()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=30)
            except asyncio.TimeoutError:
                self._task.cancel()
        if self.status.state not in (StreamState.ENDED.value, StreamState.FAILED.value):
            self._set_state(StreamState.ENDED.value, "stopped")
        await self._save_meta(force=True)
        await self._flush()
        return self.status.model_dump()

    def get_status(self) -> dict:
        return self.status.update(frames_dropped=self._base[1] + self.buffer.dropped).model_dump()

    def rotate_key(self, key: str) -> str | None:
        """A new RTMP stream key: the next publisher must use it. Returns the new source URI."""
        if self.source is None:
            raise ValueError("not an RTMP stream")
        self.source.set_key(key)
        self.uri = self.source.uri
        return self.uri

    def source_uri(self) -> str | None:
        """What this ingest reads (an RTMP listen URI holds its key): for the registry only."""
        return self.uri

    def done(self) -> bool:
        """True once the stream is over and everything it produced is stored."""
        return self._task is not None and self._task.done() and self.store.pending == 0

    def set_catalog_version(self, version: str) -> None:
        self.catalog_version = version

    # -- webcam --------------------------------------------------------------------------
    def push_jpeg(self, data: bytes) -> int:
        """One webcam frame; returns the frames dropped so far."""
        rgb = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if rgb is None:
            log.debug("webcam %s: not a JPEG (%d bytes)", self.status.id, len(data))
            return self.buffer.dropped
        now = time.time()
        if self._webcam_t0 is None:
            self._webcam_t0 = now
        self.buffer.put(
            DecodedFrame(
                t=now - self._webcam_t0,
                index=self._webcam_index,
                rgb=cv2.cvtColor(rgb, cv2.COLOR_BGR2RGB),
                arrival=now,
            )
        )
        self._webcam_index += 1
        self.status = self.status.update(frames_received=self.status.frames_received + 1)
        self.metrics.decoded(1)
        return self.buffer.dropped

    # -- the pipeline ----------------------------------------------------------------------
    async def _dispatch(self) -> None:
        # futures of batches sent, in order; a full queue holds the dispatcher back, and frames
        # then wait in the buffer, which drops the oldest: what is analysed stays close to live
        in_flight: asyncio.Queue = asyncio.Queue(maxsize=max(1, self.config.live.max_in_flight - 1))
        publisher = asyncio.ensure_future(self._publish_in_order(in_flight))
        while True:
            frames = await asyncio.to_thread(self.buffer.get_batch, self.config.live.sampling.batch_size, 0.25)
            self._record_counts()
            if not frames:
                if (self._source_done.is_set() or self.buffer.closed) and len(self.buffer) == 0:
                    break
                await self._save_meta()
                continue
            if self.status.frame_width is None:
                h, w = frames[0].rgb.shape[:2]
                self.status = self.status.update(frame_width=w, frame_height=h)
            batch = FrameBatch.stack(
                self.status.id,
                self._seq,
                [f.rgb for f in frames],
                [f.t for f in frames],
                [f.index for f in frames],
                [f.arrival for f in frames],
                catalog_version=self.catalog_version,
                live=True,
            )
            if self.config.shots.enabled:
                batch = dataclasses.replace(batch, cuts=self.shots.flags(batch.frames))
            self._seq += 1
            await in_flight.put(asyncio.ensure_future(self._detect(batch)))
        await in_flight.put(None)
        await publisher
        self._record_counts()
        await self._publish(self.chain.finish())
        if self._final is not None:
            self._set_state(*self._final)
        await self._save_meta(force=True)
        await self._flush()

    async def _flush(self) -> None:
        if not await self.store.flush(self.config.store.flush_timeout_s):
            log.error(
                "stream %s: the results store did not take %d records within %g s",
                self.status.id,
                self.store.pending,
                self.config.store.flush_timeout_s,
            )

    async def _publish_in_order(self, in_flight: asyncio.Queue) -> None:
        """Each batch's results as soon as it and every batch before it are back."""
        while (sent := await in_flight.get()) is not None:
            batch, results = await sent
            if results is not None:
                await self._publish(self.chain.push(batch, results))

    async def _detect(self, batch: FrameBatch) -> tuple[FrameBatch, list[list[FrameResult]] | None]:
        """The batch and each detector's results; None for a lost batch (counted and logged)."""
        ref = ray.put(batch)
        self._batches_out += 1
        try:
            return batch, list(await asyncio.gather(*(h.remote(ref) for h in self.detectors.values())))
        except ray.exceptions.RayTaskError as e:  # the detector's own error: say what it was
            log.error("stream %s: batch %d lost: a detector failed: %s", self.status.id, batch.seq, e.cause or e)
        except Exception as e:  # a replica lost mid-call, the deployment unavailable
            log.warning("stream %s: batch %d lost: %s: %s", self.status.id, batch.seq, type(e).__name__, e)
        finally:
            self._batches_out -= 1
        self.status = self.status.update(
            batches_lost=self.status.batches_lost + 1, frames_lost=self.status.frames_lost + len(batch)
        )
        self.metrics.lost(len(batch))
        return batch, None

    def _record_counts(self) -> None:
        """The stream's metrics from the counts its source and buffer keep."""
        self.metrics.totals(decoded=None if self.source is None else self.source.frames, dropped=self.buffer.dropped)
        self.metrics.queue(len(self.buffer), self._batches_out)

    async def _publish(self, results: list[FrameResult]) -> None:
        """Frame records of the results the chain has ready, with their arrival time."""
        if not results:
            return
        records = [{**r.record(), "arrival": round(r.arrival or 0.0, 4)} for r in results]
        # a restarted ingest never repeats what its predecessor stored
        records = [r for r in records if r["t"] > self._last_t]
        if not records:
            return
        self._last_t = records[-1]["t"]
        await self.store.append(self.status.id, records)
        self.status = self.status.update(frames_analysed=self.status.frames_analysed + len(records))
        self.metrics.analysed(len(records))
        await self._save_meta()

    # -- state -------------------------------------------------------------------------------
    def _on_state_threadsafe(self, state: StreamState, reason: str | None) -> None:
        """Called from the source's thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_state, state, reason)

    def _on_state(self, state: StreamState, reason: str | None) -> None:
        if state == StreamState.STARTING and self.resume:
            return  # a restarted stream stays `reconnecting` until its frames flow again
        if state in (StreamState.ENDED, StreamState.FAILED):
            # the stream has ended when its last frames are analysed, not when its source stops
            self._final = (state.value, reason)
            self._source_done.set()
            return
        self._set_state(state.value, reason)
        asyncio.ensure_future(self._save_meta(force=True))

    def _set_state(self, state: str, reason: str | None) -> None:
        log.info("stream %s: %s%s", self.status.id, state, f" ({reason})" if reason else "")
        self.status = self.status.update(state=state, reason=reason)

    async def _save_meta(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_meta < self.config.live.status_every_s:
            return
        self._last_meta = now
        if self.source is not None:
            self.status = self.status.update(frames_received=self._base[0] + self.source.frames)
        self.status = self.status.update(frames_dropped=self._base[1] + self.buffer.dropped)
        report = self.chain.report(self.status.source)
        meta = {"status": self.status.model_dump(), "report": report.model_dump()}
        if self.source is not None:
            meta["shift"] = self.source.shift  # how a restarted ingest finds its place in the source
        await self.store.put_meta(self.status.id, meta)
