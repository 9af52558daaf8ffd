"""What the Ray side of media-ray is made of, by name: the named actors, the Serve applications
of the detectors, and the errors the API reports.

Both Ray layers (`actors/` and `deployments/`) and the driver (`media_ray/app/`) need these
names; they live here, below all of them, so neither Ray layer has to import the other. Nothing
here imports Ray.
"""

from __future__ import annotations

from dataclasses import dataclass

from media_ray.config import MediaRayConfig

#: the named actor that holds the live streams and the live catalogue (`actors/registry.py`)
REGISTRY_NAME = "media-ray-registry"
#: the named actor that hosts the embedded results store (`actors/store.py`)
STORE_NAME = "media-ray-store"

#: detector name -> Serve deployment name (others: the class name of an import path, or
#: `NameDetector`)
DEPLOYMENT_NAMES: dict[str, str] = {
    "clip": "CLIPDetector",
    "reference": "ReferenceDetector",
    "visual": "VisualDetector",
}


class StreamError(ValueError):
    """A stream request that cannot be served (bad detector, no port left, no tier up): the API
    answers it with a 4xx and its message."""


class BrandExists(ValueError):
    """A brand id that is in the catalogue already, sent to be added (409)."""


def deployment_name(detector: str) -> str:
    """The Serve deployment of one detector."""
    base = detector.rsplit(":", 1)[-1]  # a detector named by import path: its class name
    if detector in DEPLOYMENT_NAMES:
        return DEPLOYMENT_NAMES[detector]
    return base if base.endswith("Detector") else f"{base.capitalize()}Detector"


def app_name(prefix: str, detector: str, tier: str | None = None) -> str:
    """The Serve application of one detector (of one tier)."""
    slug = detector.rsplit(":", 1)[-1].lower()
    return f"{prefix}-{slug}" + (f"-{tier}" if tier else "")


@dataclass(frozen=True)
class DetectorApp:
    """One Serve application: a detector, on one tier or untiered."""

    detector: str
    tier: str | None
    name: str


def plan_apps(config: MediaRayConfig, detectors: list[str], tiers: list[str] | None = None) -> list[DetectorApp]:
    """The Serve applications that run `detectors`: one each, or one per tier for tiered ones."""
    prefix = config.ray.app_prefix
    apps: list[DetectorApp] = []
    for d in detectors:
        if tiers and d in config.live.tiered_detectors:
            apps.extend(DetectorApp(d, t, app_name(prefix, d, t)) for t in tiers)
        else:
            apps.append(DetectorApp(d, None, app_name(prefix, d)))
    return apps
