"""Run by test_ray_ports.py in a process of its own, with Ray's token auth on (as outside
tests): starts `media-ray serve`'s LiveService, then reports, as one JSON line, every listening
socket of its process tree and what a gRPC call without the token (and with it) gets from
each Serve replica's port, the port a pickled payload was once sent to.

    python ports_probe.py SAMPLE_FOLDER HTTP_PORT
"""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path

import grpc
import psutil

from media_ray.app.live_service import LiveService
from media_ray.catalog import BrandCatalog
from media_ray.config import MediaRayConfig

#: calls of the services behind Ray's ports: a worker's core (an empty request is a valid
#: message), a Serve replica's inter-deployment server (whose requests carry pickles), the
#: GCS and the raylet
PROBE_METHODS = (
    "/ray.rpc.CoreWorkerService/GetCoreWorkerStats",
    "/ray.serve.ASGIService/HandleRequest",
    "/ray.rpc.NodeInfoGcsService/GetAllNodeInfo",
    "/ray.rpc.NodeManagerService/GetNodeStats",
)


def listening(root: psutil.Process) -> list[dict]:
    procs = {p.pid: p for p in [root, *root.children(recursive=True)]}
    found = []
    for c in psutil.net_connections(kind="inet"):
        if c.status == psutil.CONN_LISTEN and c.pid in procs:
            found.append({"ip": c.laddr.ip, "port": c.laddr.port, "process": procs[c.pid].name()})
    return found


def call(port: int, token: str | None, name: str = PROBE_METHODS[0]) -> str:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        method = channel.unary_unary(name, request_serializer=None, response_deserializer=None)
        metadata = [("authorization", f"Bearer {token}")] if token else []
        try:
            method(b"", metadata=metadata, timeout=5)
            return "OK"
        except grpc.RpcError as e:
            return e.code().name


def main() -> None:
    folder, http_port = Path(sys.argv[1]), int(sys.argv[2])
    config = MediaRayConfig(
        http={"host": "127.0.0.1", "port": http_port, "auth": {"token": "probe-token-0123456789abcdef"}},
        placement={"default": {"num_cpus": 0.1}, "ingest": {"num_cpus": 0.1}},
        ray={"namespace": "media-ray-ports", "app_prefix": "ports"},
    )
    service = LiveService(config, BrandCatalog.from_folder(folder / "logos"), ["reference"]).start()
    try:
        sockets = listening(psutil.Process())
        token_file = Path.home() / ".ray" / "auth_token"
        token = token_file.read_text().strip()
        exposed = [s for s in sockets if not ipaddress.ip_address(s["ip"]).is_loopback]
        # every call without the token, on every port reachable from another machine
        probes = [{**s, "no_token": {m: call(s["port"], None, m) for m in PROBE_METHODS}} for s in exposed]
        # and the worker call with the token, on the replicas' ports
        for probe in probes:
            if probe["process"].startswith("ray::ServeReplica"):
                probe["token"] = call(probe["port"], token)
        print(
            json.dumps(
                {
                    "sockets": sockets,
                    "probes": probes,
                    "http_port": http_port,
                    "token_file_mode": oct(token_file.stat().st_mode & 0o777),
                }
            ),
            flush=True,
        )
    finally:
        service.stop()


if __name__ == "__main__":
    main()
