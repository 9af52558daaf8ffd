"""One configuration tree for the whole system, validated once at start-up.

Sources of values, strongest first: the environment (`MEDIA_RAY_` prefix, `__` between levels,
for example `MEDIA_RAY_SAMPLING__FPS=2` or `MEDIA_RAY_DETECTORS__CLIP__MODEL=/models/clip`),
then a YAML file (`MediaRayConfig.load(path)`), then the defaults below. Command-line flags
are applied on top by the CLI.

What is analysed (`detectors`: each detector's own parameters) is kept apart from where it runs
(`placement`: resources, replicas, node labels), so moving a detector to a GPU node never
touches its parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from media_ray.config_http import ApiLimitsConfig as ApiLimitsConfig  # re-exported: the tree in one place
from media_ray.config_http import AuthConfig as AuthConfig
from media_ray.config_http import HttpConfig
from media_ray.config_placement import AutoscalingConfig as AutoscalingConfig  # re-exported
from media_ray.config_placement import PlacementConfig
from media_ray.config_report import ReportConfig
from media_ray.detectors.clip import ClipParams
from media_ray.detectors.cloud_vision import CloudVisionParams
from media_ray.detectors.ocr import OcrParams
from media_ray.detectors.reference import ReferenceParams
from media_ray.detectors.shape import ShapeParams
from media_ray.detectors.visual import VisualParams
from media_ray.live_timeline import LiveSourceConfig
from media_ray.shots import ShotParams
from media_ray.tracking import TrackingConfig
from media_ray.valuation import QualityParams, RateCard
from media_ray.watching import WatchConfig


class SamplingConfig(BaseModel):
    """Which frames are analysed and how they are grouped."""

    model_config = ConfigDict(extra="forbid")

    fps: float = Field(5.0, gt=0, description="frames analysed per second of video")
    batch_size: int = Field(8, ge=1, description="frames per FrameBatch sent to the detectors")
    decode_threads: int = Field(0, ge=0, description="PyAV decoder threads; 0 lets FFmpeg choose")


#: CPUs a LiveIngest actor reserves unless `placement.ingest` says otherwise: it mostly waits on
#: I/O (its decoding runs in a thread), and 20 of them (`http.limits.max_streams`) must fit on a
#: 2-core machine beside the detectors
INGEST_NUM_CPUS = 0.01


class PipelineConfig(BaseModel):
    """How a file's batches flow to the detectors."""

    model_config = ConfigDict(extra="forbid")

    max_in_flight: int = Field(4, ge=1, description="FrameBatches of a file sent to the detectors and not yet back")
    files_in_flight: int = Field(
        0,
        ge=0,
        description="files `analyze` runs at once, each with its own ingest, all feeding the same "
        "detector replicas; 0: as many as the cluster has CPUs (at least 2)",
    )
    ready_timeout_s: float = Field(
        180.0,
        gt=0,
        description="how long deployments and actors may take to start before the run stops and says why",
    )
    batch_retries: int = Field(
        3,
        ge=0,
        description="times a batch is sent again to a detector whose replica died while it had the batch "
        "(Serve starts a new replica; the call waits for one); a detector that raises fails the run at once",
    )
    retry_backoff_s: float = Field(
        0.5, ge=0, description="wait before the first such retry; it doubles with each further one"
    )
    ingest_restarts: int = Field(
        3,
        ge=0,
        description="restarts of a file's StreamIngest actor whose process died; the analysis "
        "goes on after the last batch the driver received, with nothing repeated or lost",
    )


class MergeConfig(BaseModel):
    """When two detections are one logo (found by two detectors), and only the better is kept."""

    model_config = ConfigDict(extra="forbid")

    same_logo_iou: float = Field(
        0.5, gt=0, le=1, description="two boxes of one label overlapping this much (IoU) are one logo"
    )
    same_logo_inside: float = Field(
        0.8,
        gt=0,
        le=1,
        description="a box of one label lying this much "
        "inside another (intersection over the smaller) is the same logo: "
        "one detector's box may be loose where another's is tight",
    )


class ExposureConfig(BaseModel):
    """How analysed frames become appearances."""

    model_config = ConfigDict(extra="forbid")

    merge_gap_s: float = Field(0.5, ge=0, description="gaps shorter than this join two appearances")
    min_duration_s: float = Field(0.0, ge=0, description="shorter appearances are dropped")
    quality: QualityParams = Field(
        default_factory=QualityParams, description="the quality index of an appearance (`media_ray.valuation`)"
    )
    rate_card: RateCard = Field(default_factory=RateCard, description="prices of exposure, for the media value")


class StoreConfig(BaseModel):
    """Where frame records and stream results are kept."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["embedded", "redis"] = Field(
        "embedded",
        description="`embedded`: an actor in the cluster with bounded history; `redis`: Redis streams",
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="the Redis server, with `kind: redis`")
    history: int = Field(100_000, ge=1, description="frame records kept per stream")
    max_concurrent_calls: int = Field(
        1000,
        ge=1,
        description="calls the embedded store actor serves at "
        "once; each WebSocket viewer waiting for records holds one",
    )
    write_buffer: int = Field(
        10_000,
        ge=1,
        description="frame records a live stream keeps, in order, while the store does not answer "
        "(a Redis restart), written when it answers again; beyond, the oldest are dropped and logged",
    )
    flush_timeout_s: float = Field(
        30.0,
        ge=0,
        description="how long a stream that ends keeps retrying the writes the store did not take",
    )


class SourcePolicyConfig(BaseModel):
    """Which sources `POST /api/streams` may name (`media_ray.source_policy`); any other is
    refused with a 422 before anything is made for it."""

    model_config = ConfigDict(extra="forbid")

    media_roots: list[str] = Field(
        default_factory=list,
        description="folders whose files may be played, checked after symbolic links and `..` are "
        "resolved; empty: no local file or capture device is accepted",
    )
    allow_private_hosts: bool = Field(
        False,
        description="let URLs name hosts that are, or resolve to, loopback, private, link-local (cloud "
        "metadata), multicast, unspecified or reserved addresses",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="host names or IP addresses, exactly as a URL spells them, accepted whatever "
        "they resolve to (e.g. 127.0.0.1 for a local test server)",
    )


def _live_sampling() -> SamplingConfig:
    return SamplingConfig(fps=2.0, batch_size=2)


class LiveConfig(BaseModel):
    """Streams analysed as they arrive (`media-ray serve`)."""

    model_config = ConfigDict(extra="forbid")

    sampling: SamplingConfig = Field(
        default_factory=_live_sampling,
        description="frames analysed per "
        "second of a live stream (a stream may ask for its own fps) and "
        "frames per FrameBatch",
    )
    max_in_flight: int = Field(
        2,
        ge=1,
        description="batches of one stream at the detectors; more wait in the stream's buffer, which drops the oldest",
    )
    queue_frames: int = Field(
        4,
        ge=1,
        description="frames waiting for the detectors before the oldest are dropped: the most a live stream lags by",
    )
    source: LiveSourceConfig = Field(
        default_factory=LiveSourceConfig, description="how pulled sources are read and reconnected"
    )
    policy: SourcePolicyConfig = Field(
        default_factory=SourcePolicyConfig,
        description="which sources a stream may name: media roots, URL schemes, private hosts",
    )
    paced_schemes: list[str] = Field(
        default_factory=lambda: ["http", "https"],
        description="pulled "
        "sources paced by their own timestamps, like `ffmpeg -re` (local "
        "files always are; a live source paces itself)",
    )
    status_every_s: float = Field(
        1.0, gt=0, description="how often a running stream's status and report are saved to the store"
    )
    rtmp_host: str = Field("127.0.0.1", description="interface the RTMP listeners bind")
    rtmp_public_host: str | None = Field(None, description="host in publish URLs (default rtmp_host)")
    rtmp_ports: tuple[int, int] = Field(
        (1935, 1954), description="first and last port for RTMP listeners, one per stream being published"
    )
    hls_dir: str = Field("", description="where streams' HLS playback is written (default: a temp folder)")
    hls_segment_s: float = Field(1.0, gt=0, description="length of an HLS playback segment")
    hls_upload: str = Field(
        "",
        description="gs://BUCKET/PREFIX/: each stream's HLS playback is also copied to PREFIX/STREAM_ID/ as "
        "it is written (segments once complete, then the playlist); the copy outlives the stream",
    )
    tiers: list[str] = Field(
        default_factory=list,
        description="tiers of the tiered detectors, in the default order a stream takes them",
    )
    tiered_detectors: list[str] = Field(
        default_factory=lambda: ["clip"],
        description="detectors that run once per tier, each placed on its tier's nodes",
    )
    tier_label: str = Field("media-ray.io/tier", description="node label a tier's placement selects")
    detectors: list[str] | None = Field(
        None, description="detectors of a stream that names none (default: the default set)"
    )
    ingest_concurrency: int = Field(
        100,
        ge=1,
        description="calls a stream's LiveIngest actor serves at once (status, webcam frames, stop)",
    )
    registry_concurrency: int = Field(100, ge=1, description="calls the stream registry actor serves at once")
    start_timeout_s: float = Field(
        60.0,
        gt=0,
        description="how long a new stream's LiveIngest actor may take to start (Ray may have no CPU "
        "left to place it); then the stream is undone and the request is a 503",
    )
    watch_every_s: float = Field(
        3.0,
        gt=0,
        description="how often the registry checks each running stream's ingest actor; "
        "one found dead is started again for the same stream (counted in `restarts`)",
    )
    rtmp_patience_s: float = Field(
        10.0,
        ge=0,
        description="after its publisher leaves, how long an RTMP stream waits (`reconnecting`) "
        "for a publisher of its key to come back before it has `ended`; 0 ends it at once",
    )


class RayConfig(BaseModel):
    """Which Ray to run on."""

    model_config = ConfigDict(extra="forbid")

    address: str = Field(
        "local",
        description="`local` starts a Ray of this process (or joins the one Ray's RAY_ADDRESS names); "
        "`auto`, HOST:6379 or ray://HEAD:10001 joins a cluster",
    )
    keep_deployments: bool = Field(
        True,
        description="`analyze` on a Ray it joined leaves its detector applications running, and "
        "reuses those built from the same detector, parameters, placement and catalogue: the next "
        "job starts without deploying (a Ray it started goes with it)",
    )
    namespace: str = Field("media-ray", description="Ray namespace of media-ray's named actors")
    app_prefix: str = Field("media-ray", description="prefix of the Serve application names")
    dashboard: bool = Field(
        True,
        description="start the Ray dashboard with a local Ray, on 127.0.0.1 (`analyze` and `serve` print "
        "its URL); false starts none (Ray's metrics are exported either way)",
    )
    metrics_export_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="port of a local Ray's Prometheus metrics (`/metrics`, on every interface of the node, as "
        "Ray binds it; `cluster/grafana-media-ray.json` charts them); 0: a free port, printed by the CLI",
    )
    task_events_kept: int = Field(
        2_000,
        ge=0,
        description="task events a local Ray's GCS keeps for the dashboard and `ray list tasks` "
        "(Ray's own default, 100000, lets a long-running server's GCS grow for hours)",
    )
    malloc_arenas: int = Field(
        2,
        ge=1,
        description="glibc malloc arenas of a local Ray's processes (MALLOC_ARENA_MAX, unless set): "
        "the default lets a live stream's decoder and detector threads keep freed frames",
    )


class DetectorsConfig(BaseModel):
    """Each detector's own parameters: what it looks for and how, never where it runs. A
    detector of the user's own (named by import path `module:Class`) takes its parameters
    here too, under that name, and validates them itself."""

    model_config = ConfigDict(extra="allow")

    reference: ReferenceParams = Field(
        default_factory=ReferenceParams, description="keypoint matching of reference images"
    )
    shape: ShapeParams = Field(default_factory=ShapeParams, description="silhouettes of flat marks")
    ocr: OcrParams = Field(default_factory=OcrParams, description="brand names read in the frame")
    visual: VisualParams = Field(default_factory=VisualParams, description="per-frame visual signals")
    clip: ClipParams = Field(default_factory=ClipParams, description="zero-shot CLIP")
    cloud_vision: CloudVisionParams = Field(
        default_factory=CloudVisionParams, description="Google Cloud Vision logo detection, with a request budget"
    )

    def params_for(self, detector: str) -> dict[str, Any]:
        """The parameters of one detector, as a mapping its `Params` validates."""
        value = getattr(self, detector, None) if detector in type(self).model_fields else None
        if isinstance(value, BaseModel):
            return value.model_dump()
        return dict((self.model_extra or {}).get(detector) or {})


class MediaRayConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEDIA_RAY_", env_nested_delimiter="__", extra="forbid")

    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="frames analysed of a file")
    detector_set: list[str] | None = Field(
        None,
        description="detector names to run; unset: the default "
        "set (the weight-free ones, and `clip` where its weights load)",
    )
    detectors: DetectorsConfig = Field(
        default_factory=DetectorsConfig, description="each detector's parameters, by detector name"
    )
    placement: dict[str, PlacementConfig] = Field(
        default_factory=dict,
        description="where each detector "
        "runs, by detector name (`clip@lan` for one tier, "
        "`ingest` for the ingest actors); `default` for the rest (the ingest takes it with at most "
        "0.01 CPU, so that max_streams of them fit)",
    )
    detector_tiers: dict[str, str] = Field(
        default_factory=lambda: {"cloud_vision": "cloud"},
        description="detectors without a `placement` of their own that run on a tier's nodes (label "
        "`live.tier_label`), or on any node when none has it",
    )
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig, description="flow of a file's batches")
    merge: MergeConfig = Field(default_factory=MergeConfig, description="one detection per logo")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="hysteresis over time")
    shots: ShotParams = Field(
        default_factory=ShotParams, description="shot cuts, which end every track and every appearance"
    )
    exposure: ExposureConfig = Field(default_factory=ExposureConfig, description="appearances and totals")
    report: ReportConfig = Field(
        default_factory=ReportConfig, description="report.csv, report.html and the annotated video of `analyze`"
    )
    store: StoreConfig = Field(default_factory=StoreConfig, description="where results are kept")
    ray: RayConfig = Field(default_factory=RayConfig, description="which Ray to run on")
    http: HttpConfig = Field(default_factory=HttpConfig, description="the HTTP app of `media-ray serve`")
    live: LiveConfig = Field(default_factory=LiveConfig, description="live streams")
    watch: WatchConfig = Field(default_factory=WatchConfig, description="`media-ray watch`: recordings as they land")

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        # the environment overrides what a YAML file (passed as init values) says
        return env_settings, init_settings

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> MediaRayConfig:
        data: dict[str, Any] = {}
        if path is not None:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{path}: the configuration must be a mapping")
            data.update(loaded)
        data.update(overrides)
        return cls(**data)

    def placement_for(self, detector: str, tier: str | None = None) -> PlacementConfig:
        """Placement of a detector (of one tier: `placement["clip@lan"]`), else `default`.

        A tier without a placement of its own selects nodes whose tier label is the tier.
        """
        if tier is not None:
            key = f"{detector}@{tier}"
            if key in self.placement:
                return self.placement[key]
            base = self.placement.get(detector) or self.placement.get("default", PlacementConfig())
            return base.model_copy(update={"label_selector": {self.live.tier_label: tier}})
        if detector in self.placement:
            return self.placement[detector]
        base = self.placement.get("default", PlacementConfig())
        if detector in self.detector_tiers:  # its tier's nodes first, then any
            selector = {self.live.tier_label: self.detector_tiers[detector]}
            return base.model_copy(update={"label_selector": selector, "fallback_strategy": [{"label_selector": {}}]})
        if detector == "ingest":  # waits on I/O, decodes in a thread: http.limits.max_streams of them fit
            return base.model_copy(update={"num_cpus": min(base.num_cpus, INGEST_NUM_CPUS)})
        return base

    def params_for(self, detector: str) -> dict[str, Any]:
        return self.detectors.params_for(detector)
