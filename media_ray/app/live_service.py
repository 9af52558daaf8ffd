"""`media-ray serve`: the detectors, the stream registry, the results store and the HTTP app.

The applications are those of `deployments.serve_app`, built by the same functions that
`serve run deployments/serve_config.yaml` calls: one per detector and the API application,
whose StreamRegistryHost owns the stream registry. The process that starts a LiveService owns
the embedded store actors; they live as long as it does.
"""

from __future__ import annotations

import logging

import ray
from ray import serve

from actors.store import connect_store
from deployments.serve_app import api_app_name, api_application, with_api_token
from media_ray.app.runtime import MediaRayRuntime, wait_for_apps
from media_ray.catalog import BrandCatalog
from media_ray.config import MediaRayConfig
from media_ray.topology import REGISTRY_NAME

log = logging.getLogger(__name__)


class LiveService:
    def __init__(self, config: MediaRayConfig, catalog: BrandCatalog, detectors: list[str]):
        # the API token, resolved here so that every replica checks the same one: configured,
        # read from the token file, or generated now (`token.generated`: the CLI prints it once);
        # raises TokenError
        config, self.token = with_api_token(config)
        self.config = config
        self.catalog = catalog
        self.detectors = detectors
        self.runtime = MediaRayRuntime(config, catalog, detectors, tiers=config.live.tiers or None)
        self.registry = None
        self.store = None
        self._api_deployed = False

    @property
    def api_app_name(self) -> str:
        return api_app_name(self.config)

    @property
    def url(self) -> str:
        return self.config.http.base_url

    def start(self) -> LiveService:
        self.runtime.start(http=True)
        try:
            ns = self.config.ray.namespace
            self.store = connect_store(self.config.store, namespace=ns)
            app = api_application(self.config, self.catalog, self.detectors)
            self._api_deployed = True
            serve.run(app, name=self.api_app_name, route_prefix="/")
            wait_for_apps([self.api_app_name], self.config.pipeline.ready_timeout_s)
            self.registry = ray.get_actor(REGISTRY_NAME, namespace=ns)
        except BaseException:
            self.stop()
            raise
        log.info("media-ray serving on %s", self.url)
        return self

    def stop(self) -> None:
        if self._api_deployed and ray.is_initialized():
            # the streams are stopped here, not left to the registry host's own shutdown: a local
            # Ray that this process started goes at once, without Serve's graceful stop
            registry = self.registry or _registry_if_any(self.config.ray.namespace)
            if registry is not None:
                try:
                    ray.get(registry.shutdown.remote(), timeout=60)
                except Exception as e:  # stopping what is left matters more than this error
                    log.warning("stopping streams: %s", e)
                ray.kill(registry)
            self.registry = None
            if not self.runtime.owns_ray:
                serve.delete(self.api_app_name)
            self._api_deployed = False
        self.runtime.stop()

    def __enter__(self) -> LiveService:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _registry_if_any(namespace: str):
    try:
        return ray.get_actor(REGISTRY_NAME, namespace=namespace)
    except ValueError:  # never made: the API application did not start
        return None
