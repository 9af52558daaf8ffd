"""The results store shared across a Ray cluster.

The embedded store is a `MemoryStore` hosted by one named actor, `ResultStoreActor`; every
process that needs it (ingest actors, the API ingress) calls `connect_store(config)` and gets
an `ActorStore`, a client with the `ResultStore` interface. With `kind: redis` the same call
returns a `RedisStore` and no actor is involved, so callers never care which one they have.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import ray

from media_ray.config import StoreConfig
from media_ray.store import Entries, MemoryStore, RedisStore, ResultStore, StoreUnavailable
from media_ray.topology import STORE_NAME

log = logging.getLogger(__name__)


@ray.remote(num_cpus=0)
class ResultStoreActor:
    """Hosts the embedded store; its methods are MemoryStore's, run on the actor's event loop."""

    def __init__(self, config: StoreConfig):
        self.store = MemoryStore(config.history)

    async def append(self, stream_id: str, records: list[dict[str, Any]]) -> None:
        await self.store.append(stream_id, records)

    async def history(self, stream_id: str, since: float | None, limit: int) -> list[dict[str, Any]]:
        return await self.store.history(stream_id, since, limit)

    async def follow(
        self, stream_id: str, cursor: str | None, timeout_s: float, limit: int
    ) -> tuple[list[dict[str, Any]], str]:
        return await self.store.follow(stream_id, cursor, timeout_s, limit)

    async def follow_entries(
        self, stream_id: str, cursor: str | None, timeout_s: float, limit: int
    ) -> tuple[Entries, str]:
        return await self.store.follow_entries(stream_id, cursor, timeout_s, limit)

    async def last(self, stream_id: str) -> dict[str, Any] | None:
        return await self.store.last(stream_id)

    async def put_meta(self, stream_id: str, meta: dict[str, Any]) -> None:
        await self.store.put_meta(stream_id, meta)

    async def get_meta(self, stream_id: str) -> dict[str, Any] | None:
        return await self.store.get_meta(stream_id)

    async def streams(self) -> list[str]:
        return await self.store.streams()

    async def delete(self, stream_id: str) -> None:
        await self.store.delete(stream_id)


#: what a call to a store actor that is gone (or not reachable now) raises
_GONE = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)


class ActorStore(ResultStore):
    """A client of a ResultStoreActor. Picklable: it may be passed to other actors. A call to an
    actor that is gone raises StoreUnavailable."""

    def __init__(self, actor: ray.actor.ActorHandle):
        self.actor = actor

    async def append(self, stream_id: str, records: list[dict[str, Any]]) -> None:
        try:
            await self.actor.append.remote(stream_id, records)
        except _GONE as e:
            raise StoreUnavailable(f"the store actor: {e}") from e

    async def history(self, stream_id: str, since: float | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        return await self.actor.history.remote(stream_id, since, limit)

    async def follow(
        self, stream_id: str, cursor: str | None = None, timeout_s: float = 15.0, limit: int = 1000
    ) -> tuple[list[dict[str, Any]], str]:
        return await self.actor.follow.remote(stream_id, cursor, timeout_s, limit)

    async def follow_entries(
        self, stream_id: str, cursor: str | None = None, timeout_s: float = 15.0, limit: int = 1000
    ) -> tuple[Entries, str]:
        try:
            return await self.actor.follow_entries.remote(stream_id, cursor, timeout_s, limit)
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, ValueError):  # not a cursor of this store
                raise ValueError(str(e.cause)) from None
            raise
        except _GONE as e:
            raise StoreUnavailable(f"the store actor: {e}") from e

    async def last(self, stream_id: str) -> dict[str, Any] | None:
        return await self.actor.last.remote(stream_id)

    async def put_meta(self, stream_id: str, meta: dict[str, Any]) -> None:
        try:
            await self.actor.put_meta.remote(stream_id, meta)
        except _GONE as e:
            raise StoreUnavailable(f"the store actor: {e}") from e

    async def get_meta(self, stream_id: str) -> dict[str, Any] | None:
        return await self.actor.get_meta.remote(stream_id)

    async def streams(self) -> list[str]:
        return await self.actor.streams.remote()

    async def delete(self, stream_id: str) -> None:
        await self.actor.delete.remote(stream_id)

    async def close(self) -> None:
        # the actor is shared: closing one client leaves it, and the results, in place
        pass


def _embedded(config: StoreConfig, name: str, namespace: str | None, actor_options: dict[str, Any]) -> ResultStore:
    options = {
        **actor_options,
        "name": name,
        "namespace": namespace,
        "get_if_exists": True,
        "max_concurrency": config.max_concurrent_calls,
    }
    log.debug("results store: actor %s in namespace %s", name, namespace or "(the caller's)")
    return ActorStore(ResultStoreActor.options(**options).remote(config))


def _redis(config: StoreConfig, name: str, namespace: str | None, actor_options: dict[str, Any]) -> ResultStore:
    return RedisStore.from_config(config)


#: store kind (StoreConfig.kind) -> how a process connects to the shared store
CONNECTORS: dict[str, Callable[[StoreConfig, str, str | None, dict[str, Any]], ResultStore]] = {
    "embedded": _embedded,
    "redis": _redis,
}


def connect_store(
    config: StoreConfig,
    name: str = STORE_NAME,
    namespace: str | None = None,
    actor_options: dict[str, Any] | None = None,
) -> ResultStore:
    """The store every process of the cluster shares, of the configured kind. Needs `ray.init` done.

    `embedded`: gets the actor called `name` in `namespace`, creating it (with `actor_options`,
    for example `{"lifetime": "detached"}` or resources) if there is none; then the first
    creator's `history` applies. Pass the namespace explicitly wherever callers live in
    different ones: None means the caller's own, and Serve replicas live in `serve`. Unless
    detached, the actor (and every result in it) goes when the process that created it ends,
    so create it first from a long-lived process (the driver, the API ingress).
    """
    return CONNECTORS[config.kind](config, name, namespace, dict(actor_options or {}))
