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
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from media_ray.tracking import TrackingConfig


class SamplingConfig(BaseModel):
    fps: float = Field(5.0, gt=0, description="frames analysed per second of video")
    batch_size: int = Field(8, ge=1, description="frames per FrameBatch")
    decode_threads: int = Field(0, ge=0, description="PyAV decoder threads; 0 lets FFmpeg choose")


class PlacementConfig(BaseModel):
    """Where a detector deployment runs and how it batches; maps onto Ray Serve options."""

    #: CPUs reserved for scheduling; compute threads are `threads`. Small by default, so that a
    #: laptop's few CPUs hold every detector and the ingest; set it for real on a cluster
    num_cpus: float = 0.1
    num_gpus: float = 0.0
    resources: dict[str, float] = Field(default_factory=dict)
    replicas: int = Field(1, ge=1)
    label_selector: dict[str, str] = Field(default_factory=dict)
    fallback_strategy: list[dict[str, Any]] = Field(default_factory=list)
    max_batch_size: int = Field(4, ge=1, description="FrameBatches per model call (@serve.batch)")
    batch_wait_timeout_s: float = Field(0.01, ge=0)
    max_ongoing_requests: int = Field(16, ge=1)
    threads: int = Field(0, ge=0, description="compute threads of a replica (torch, OpenCV); 0: all cores "
                                              "of its node. Lower it where many replicas share a node")

    def ray_actor_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.resources:
            opts["resources"] = dict(self.resources)
        if self.label_selector:
            opts["label_selector"] = dict(self.label_selector)
        if self.fallback_strategy:
            opts["fallback_strategy"] = list(self.fallback_strategy)
        return opts


class PipelineConfig(BaseModel):
    max_in_flight: int = Field(4, ge=1, description="FrameBatches sent to detectors and not yet back")
    ready_timeout_s: float = Field(180.0, gt=0, description="how long deployments may take to start")


class ExposureConfig(BaseModel):
    merge_gap_s: float = Field(0.5, ge=0, description="gaps shorter than this join two appearances")
    min_duration_s: float = Field(0.0, ge=0, description="shorter appearances are dropped")


class StoreConfig(BaseModel):
    kind: Literal["embedded", "redis"] = "embedded"
    redis_url: str = "redis://127.0.0.1:6379/0"
    history: int = Field(100_000, ge=1, description="frame records kept per stream")


class HttpConfig(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    #: base URL clients reach the app at, for links in the API (default http://host:port)
    public_url: str | None = None

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"


class LiveConfig(BaseModel):
    """Streams analysed as they arrive (`media-ray serve`)."""

    rtmp_host: str = Field("127.0.0.1", description="interface the RTMP listeners bind")
    rtmp_public_host: str | None = Field(None, description="host in publish URLs (default rtmp_host)")
    rtmp_ports: tuple[int, int] = Field((1935, 1954), description="first and last port for RTMP listeners, "
                                                                 "one per stream being published")
    hls_dir: str = Field("", description="where streams' HLS playback is written (default: a temp folder)")
    hls_segment_s: float = Field(1.0, gt=0)
    queue_frames: int = Field(4, ge=1, description="frames waiting for the detectors before the oldest "
                                                   "are dropped: the most a live stream lags by")
    fps: float = Field(2.0, gt=0, description="frames analysed per second of a live stream")
    batch_size: int = Field(2, ge=1, description="frames per FrameBatch of a live stream")
    max_in_flight: int = Field(2, ge=1, description="batches of one stream at the detectors; more "
                               "wait in the stream's buffer, which drops the oldest")
    tiers: list[str] = Field(default_factory=list, description="tiers of the tiered detectors, in the "
                                                               "default order a stream takes them")
    tiered_detectors: list[str] = Field(default_factory=lambda: ["clip"])
    tier_label: str = Field("media-ray.io/tier", description="node label a tier's placement selects")
    detectors: list[str] | None = Field(None, description="detectors of a stream that names none "
                                                          "(default: the default set)")


class RayConfig(BaseModel):
    address: str = "local"
    namespace: str = "media-ray"
    app_prefix: str = "media-ray"
    dashboard: bool = Field(False, description="start the Ray dashboard with a local Ray")


class MediaRayConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEDIA_RAY_", env_nested_delimiter="__",
                                      extra="forbid")

    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    #: detector names to run; None means the weight-free ones plus `clip` where its weights load
    detector_set: list[str] | None = None
    #: per-detector parameters, by detector name; each detector validates its own
    detectors: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: per-detector placement, by detector name; `default` applies to the rest
    placement: dict[str, PlacementConfig] = Field(default_factory=dict)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    exposure: ExposureConfig = Field(default_factory=ExposureConfig)
    #: hysteresis over time for analysed files (live streams skip it: it holds frames back)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    live: LiveConfig = Field(default_factory=LiveConfig)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                   dotenv_settings, file_secret_settings):
        # the environment overrides what a YAML file (passed as init values) says
        return env_settings, init_settings

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> "MediaRayConfig":
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
        return self.placement.get("default", PlacementConfig())

    def params_for(self, detector: str) -> dict[str, Any]:
        return dict(self.detectors.get(detector, {}))
