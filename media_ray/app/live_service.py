"""`media-ray serve`: the detectors, the stream registry, the results store and the HTTP app.

The process that starts a LiveService owns the registry and the embedded store actors; they
live as long as it does.
"""

from __future__ import annotations

import logging

import ray
from ray import serve

from actors.registry import StreamRegistry
from actors.store import connect_store
from deployments.app import api_app
from media_ray.app.runtime import MediaRayRuntime, wait_for_apps
from media_ray.auth import resolve_token
from media_ray.catalog import BrandCatalog
from media_ray.config import MediaRayConfig
from media_ray.topology import REGISTRY_NAME

log = logging.getLogger(__name__)


class LiveService:
    def __init__(self, config: MediaRayConfig, catalog: BrandCatalog, detectors: list[str]):
        # the API token, resolved here so that every replica checks the same one: configured,
        # read from the token file, or generated now (`token.generated`: the CLI prints it once);
        # raises TokenError
        self.token = resolve_token(config.http.auth)
        auth = config.http.auth.model_copy(update={"token": self.token.token})
        config = config.model_copy(update={"http": config.http.model_copy(update={"auth": auth})})
        self.config = config
        self.catalog = catalog
        self.detectors = detectors
        self.runtime = MediaRayRuntime(config, catalog, detectors, tiers=config.live.tiers or None)
        self.registry = None
        self.store = None

    @property
    def api_app_name(self) -> str:
        return f"{self.config.ray.app_prefix}-api"

    @property
    def url(self) -> str:
        return self.config.http.base_url

    def start(self) -> LiveService:
        self.runtime.start(http=True)
        try:
            ns = self.config.ray.namespace
            self.store = connect_store(self.config.store, namespace=ns)
            self.registry = StreamRegistry.options(
                name=REGISTRY_NAME,
                namespace=ns,
                get_if_exists=True,
                max_concurrency=self.config.live.registry_concurrency,
            ).remote(self.config, self.catalog, self.detectors)
            serve.run(api_app(self.config), name=self.api_app_name, route_prefix="/")
            wait_for_apps([self.api_app_name], self.config.pipeline.ready_timeout_s)
        except BaseException:
            self.stop()
            raise
        log.info("media-ray serving on %s", self.url)
        return self

    def stop(self) -> None:
        if self.registry is not None and ray.is_initialized():
            try:
                ray.get(self.registry.shutdown.remote(), timeout=60)
            except Exception as e:  # stopping what is left matters more than this error
                log.warning("stopping streams: %s", e)
            ray.kill(self.registry)
            self.registry = None
            if ray.is_initialized() and not self.runtime.owns_ray:
                serve.delete(self.api_app_name)
        self.runtime.stop()

    def __enter__(self) -> LiveService:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
