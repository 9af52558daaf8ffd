"""Run by test_placement.py in a fresh process: a Ray cluster of labelled nodes on this
machine (ray.cluster_utils.Cluster), media-ray serving with tiers, one stream per tier.

    python placement_scenario.py CLIP LOGOS WITH_LAN(0|1)

Prints one JSON object: the node id of each label, the node each tier's replica runs on (as
Ray reports it to the replica), and for each stream the tier asked, the tier serving, the
fallback flag and the node ids its frames were analysed on.
"""

import json
import os
import sys
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import httpx  # noqa: E402
import ray  # noqa: E402
from conftest import TEST_TOKEN, free_port, free_ports, source_policy_for  # noqa: E402

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
from ray import serve  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from media_ray.app.live_service import LiveService  # noqa: E402
from media_ray.catalog import BrandCatalog  # noqa: E402
from media_ray.config import MediaRayConfig  # noqa: E402
from media_ray.topology import app_name  # noqa: E402

LABEL = "media-ray.io/tier"
WHERE = "support_detectors:WhereDetector"


def main(clip: str, logos: str, with_lan: bool) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "labels": {LABEL: "local"}})
    nodes = {"local": cluster.head_node}
    if with_lan:
        nodes["lan"] = cluster.add_node(num_cpus=1, labels={LABEL: "lan"})
    nodes["cloud"] = cluster.add_node(num_cpus=1, labels={LABEL: "cloud"})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="placement", log_to_driver=False)
    port = free_port()
    config = MediaRayConfig(
        http={"port": port, "auth": {"token": TEST_TOKEN}},
        ray={"address": cluster.address, "namespace": "placement"},
        live={
            "tiers": ["local", "lan", "cloud"],
            "tiered_detectors": [WHERE],
            "sampling": {"fps": 2},
            "rtmp_ports": free_ports(2),
            "policy": source_policy_for(os.path.dirname(os.path.abspath(clip))),
        },
        placement={WHERE: {"num_cpus": 0.2}, "default": {"num_cpus": 0.1}, "ingest": {"num_cpus": 0.1}},
        pipeline={"ready_timeout_s": 60},
    )
    service = LiveService(config, BrandCatalog.from_folder(logos), [WHERE]).start()
    out = {"nodes": {tier: node.node_id for tier, node in nodes.items()}, "replicas": {}, "streams": {}}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(out["replicas"]) < len(nodes):
            # the tiers that can be placed come up on their own; each replica says where it runs
            running = {n for n, s in serve.status().applications.items() if s.status == "RUNNING"}
            for tier in nodes:
                name = app_name(config.ray.app_prefix, WHERE, tier)
                if name in running and tier not in out["replicas"]:
                    out["replicas"][tier] = serve.get_app_handle(name).stats.remote().result()["node_id"]
            time.sleep(0.5)
        for tier in ("local", "lan", "cloud"):
            request = {"source": clip, "tier": tier}
            created = httpx.post(f"{service.url}/api/streams", json=request, headers=AUTH, timeout=60).json()
            sid = created["id"]
            for _ in range(240):
                status = httpx.get(f"{service.url}/api/streams/{sid}", headers=AUTH).json()
                if status["state"] in ("ended", "failed"):
                    break
                time.sleep(0.25)
            frames = httpx.get(f"{service.url}/api/streams/{sid}/frames", headers=AUTH).json()
            out["streams"][tier] = {
                "tier": status["tier"],
                "fallback": status["fallback"],
                "state": status["state"],
                "frames": len(frames),
                "nodes": sorted({d["label"][5:] for r in frames for d in r["detections"]}),
            }
    finally:
        service.stop()
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] == "1")
