"""The placement part of the configuration tree (`placement`): where a detector deployment
runs, how it batches and scales. Part of `media_ray.config`, which re-exports these classes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AutoscalingConfig", "PlacementConfig"]


class AutoscalingConfig(BaseModel):
    """Ray Serve autoscaling of a detector's replicas on their queue: the replicas grow while
    each holds more than `target_ongoing_requests` batches (queued or running) and shrink when
    it holds fewer; maps onto Serve's `autoscaling_config`."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(1, ge=0, description="replicas kept however quiet the streams are")
    max_replicas: int = Field(4, ge=1, description="replicas at most (each reserves its placement's resources)")
    target_ongoing_requests: float = Field(
        2.0, gt=0, description="batches a replica should hold at once, queued or running"
    )
    upscale_delay_s: float = Field(5.0, ge=0, description="how long the queue must stay deep before adding one")
    downscale_delay_s: float = Field(60.0, ge=0, description="how long it must stay shallow before removing one")
    look_back_period_s: float = Field(
        30.0, gt=0, description="the window over which the replicas' queue is averaged (Serve's)"
    )

    def serve_options(self) -> dict[str, Any]:
        return {
            "min_replicas": self.min_replicas,
            "max_replicas": max(self.max_replicas, self.min_replicas, 1),
            "initial_replicas": max(self.min_replicas, 1),
            "target_ongoing_requests": self.target_ongoing_requests,
            "upscale_delay_s": self.upscale_delay_s,
            "downscale_delay_s": self.downscale_delay_s,
            "look_back_period_s": self.look_back_period_s,
        }


class PlacementConfig(BaseModel):
    """Where a detector deployment runs and how it batches; maps onto Ray Serve options."""

    model_config = ConfigDict(extra="forbid")

    num_cpus: float = Field(
        0.1,
        ge=0,
        description="CPUs reserved for scheduling (compute threads are "
        "`threads`); small by default, so that a laptop's few CPUs hold every "
        "detector and the ingest. Set it for real on a cluster",
    )
    num_gpus: float = Field(0.0, ge=0, description="GPUs reserved per replica")
    resources: dict[str, float] = Field(default_factory=dict, description="custom Ray resources reserved per replica")
    replicas: int = Field(1, ge=1, description="replicas of the deployment")
    autoscaling: AutoscalingConfig | None = Field(
        None, description="scale the replicas on queue depth instead of a fixed `replicas`"
    )
    label_selector: dict[str, str] = Field(
        default_factory=dict, description="node labels a replica must run on, e.g. {media-ray.io/tier: cloud}"
    )
    fallback_strategy: list[dict[str, Any]] = Field(
        default_factory=list, description="further label selectors tried in order when none matches"
    )
    max_batch_size: int = Field(4, ge=1, description="FrameBatches per model call (@serve.batch)")
    batch_wait_timeout_s: float = Field(
        0.01, ge=0, description="how long a model call waits for more FrameBatches to fill its batch"
    )
    max_ongoing_requests: int = Field(16, ge=1, description="requests a replica takes at once")
    threads: int = Field(
        0,
        ge=0,
        description="compute threads of a replica (torch, OpenCV); 0: the CPUs it reserves "
        "when `num_cpus` is 1 or more, else its node's cores shared among the detector replicas "
        "deployed together",
    )

    def packed_replicas(self) -> int:
        """Replicas of this placement that share whatever node they land on (a fraction of a
        CPU reserved each): the ones started, before any autoscaling."""
        if self.num_cpus >= 1:
            return 0
        return max(self.autoscaling.min_replicas, 1) if self.autoscaling is not None else self.replicas

    def ray_actor_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.resources:
            opts["resources"] = dict(self.resources)
        if self.label_selector:
            opts["label_selector"] = dict(self.label_selector)
        if self.fallback_strategy:
            opts["fallback_strategy"] = list(self.fallback_strategy)
        return opts
