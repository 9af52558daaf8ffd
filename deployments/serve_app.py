"""media-ray's Serve applications, as importable builders: what `media-ray serve` deploys and
what `serve run deployments/serve_config.yaml`, `serve deploy` and a KubeRay RayService deploy.

One application per detector (`build_detector_app`; a tiered detector has one per tier) and the
API application (`build_api_app`): the HTTP API and player page, and `StreamRegistryHost`, the
one replica that owns the stream registry actor (made with it, stopped with it). `media-ray
serve` builds the same applications through the same functions (`api_application`,
`deployments.detectors.detector_app`).

The builders take typed arguments, which Serve validates (so this module keeps its annotations
real: no `from __future__ import annotations`): `config`, a media-ray YAML file (the config
tree, with `MEDIA_RAY_...` variables of the environment over it; without it, the file that
MEDIA_RAY_CONFIG_FILE names, as a KubeRay pod mounts it), and `brands`, a catalogue folder;
without one the catalogue starts empty and brands are added through the API. Paths are read
where the application is built: on the cluster, not on the machine that submits the file.
"""

import asyncio
import logging
import os

import ray
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from actors.registry import StreamRegistry
from deployments.app import api_app
from deployments.detectors import detector_app
from media_ray.auth import ResolvedToken, resolve_token
from media_ray.catalog import BrandCatalog
from media_ray.config import MediaRayConfig
from media_ray.topology import REGISTRY_NAME, app_name

log = logging.getLogger(__name__)

#: how long a stopping StreamRegistryHost gives its registry to end the streams
REGISTRY_SHUTDOWN_S = 60.0
#: the environment variable naming the media-ray YAML file of builders given no `config`
CONFIG_FILE_ENV = "MEDIA_RAY_CONFIG_FILE"


class MediaRayArgs(BaseModel):
    """What every media-ray application is built from."""

    model_config = ConfigDict(extra="forbid")

    config: str | None = Field(None, description=f"a media-ray YAML file (default: ${CONFIG_FILE_ENV}'s, if set)")
    brands: str | None = Field(None, description="a brand catalogue folder (default: an empty catalogue)")


class DetectorAppArgs(MediaRayArgs):
    detector: str = Field(description="a detector name, or `module:Class`")
    tier: str | None = Field(None, description="the tier of a tiered detector (placed on that tier's nodes)")
    sharing: int = Field(
        1,
        ge=1,
        description="detector replicas that share a node's cores with this one's, where the placement "
        "reserves a fraction of a CPU and sets no `threads` (each then takes cores / sharing threads)",
    )


class ApiAppArgs(MediaRayArgs):
    detectors: list[str] = Field(min_length=1, description="the detectors deployed beside it, one application each")


def load_settings(args: MediaRayArgs) -> tuple[MediaRayConfig, BrandCatalog]:
    """The config tree and the catalogue the arguments name."""
    config = MediaRayConfig.load(args.config or os.environ.get(CONFIG_FILE_ENV) or None)
    catalog = BrandCatalog.from_folder(args.brands) if args.brands else BrandCatalog([])
    return config, catalog


def with_api_token(config: MediaRayConfig) -> tuple[MediaRayConfig, ResolvedToken]:
    """The config with its API token resolved (configured, read from the token file or generated
    now: `generated`), so that every API replica checks the same one; raises TokenError."""
    token = resolve_token(config.http.auth)
    auth = config.http.auth.model_copy(update={"token": token.token})
    return config.model_copy(update={"http": config.http.model_copy(update={"auth": auth})}), token


def api_app_name(config: MediaRayConfig) -> str:
    return app_name(config.ray.app_prefix, "api")


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0})
class StreamRegistryHost:
    """Owns the StreamRegistry actor (one: a second replica would share it, and stopping one would
    end every stream). The actor lives as long as this replica; when the application is deleted,
    its streams are stopped and their HLS folders removed first."""

    def __init__(self, config: MediaRayConfig, catalog: BrandCatalog, detectors: list[str]):
        self._registry = StreamRegistry.options(
            name=REGISTRY_NAME,
            namespace=config.ray.namespace,
            get_if_exists=True,
            max_concurrency=config.live.registry_concurrency,
        ).remote(config, catalog, detectors)

    def registry(self) -> ray.actor.ActorHandle:
        return self._registry

    async def __del__(self) -> None:
        try:
            await asyncio.wait_for(asyncio.wrap_future(self._registry.shutdown.remote().future()), REGISTRY_SHUTDOWN_S)
        except Exception as e:  # stopped already (by `media-ray serve`), or gone with its node
            log.info("stream registry shutdown: %s", e)
        ray.kill(self._registry)


def api_application(config: MediaRayConfig, catalog: BrandCatalog, detectors: list[str]) -> serve.Application:
    """The API application: the ingress and the host of the stream registry. `config` carries
    the API token already (`with_api_token`)."""
    return api_app(config, StreamRegistryHost.bind(config, catalog, list(detectors)))


def build_api_app(args: ApiAppArgs) -> serve.Application:
    """`import_path: deployments.serve_app:build_api_app` (route `/`)."""
    config, catalog = load_settings(args)
    config, token = with_api_token(config)
    if token.generated:
        log.warning("a new API token was generated and kept in %s (on the node that built the app)", token.path)
    return api_application(config, catalog, args.detectors)


def build_detector_app(args: DetectorAppArgs) -> serve.Application:
    """`import_path: deployments.serve_app:build_detector_app` (no route: called by handle)."""
    config, catalog = load_settings(args)
    return detector_app(args.detector, catalog, config, args.tier, sharing=args.sharing)
