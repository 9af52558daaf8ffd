"""Three labelled Ray nodes on this machine, media-ray deployed on them, and where each replica runs.

    python cluster/local_three_nodes.py [--config cluster/local-three-nodes.yaml] [--json]

Starts a head (`ray start --head --labels media-ray.io/tier=local`) and one worker per other tier
of `live.tiers` (`ray start --address HEAD --labels media-ray.io/tier=lan`, ...), each with one
CPU, on 127.0.0.1, with ports and a temporary folder of its own; deploys `media-ray serve`'s
applications (the same builders, `LiveService`) with the config's placement, which selects nodes
by label; prints, for each detector application, the node its replica runs on, the label of that
node and the label its placement asked for; then stops everything it started, and only that: its
own `ray start --block` processes, which take their node's processes with them (never `ray stop`,
which would stop every Ray of the machine). Bounded by `--timeout`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).resolve().with_name("local-three-nodes.yaml")
#: the ports each node takes besides Ray's random ones; all are chosen free here
NODE_PORT_OPTIONS = (
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
    "--metrics-export-port",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalNodes:
    """`ray start --block` processes of one Ray cluster on this machine; `stop` ends them all."""

    def __init__(self, temp_dir: str, num_cpus: int, label_key: str):
        self.temp_dir = temp_dir
        self.num_cpus = num_cpus
        self.label_key = label_key
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.processes: dict[str, subprocess.Popen] = {}  # tier -> its `ray start --block`
        self.env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}

    def start(self, tier: str, head: bool) -> None:
        common = ["--block", "--node-ip-address", "127.0.0.1", "--num-cpus", str(self.num_cpus)]
        common += ["--labels", f"{self.label_key}={tier}", "--temp-dir", self.temp_dir, "--disable-usage-stats"]
        for option in NODE_PORT_OPTIONS:
            common += [option, str(free_port())]
        if head:
            where = ["--head", "--port", str(self.port), "--ray-client-server-port", str(free_port())]
            where += ["--include-dashboard", "false"]
        else:
            where = ["--address", self.address]
        log = open(os.path.join(self.temp_dir, f"ray-start-{tier}.log"), "w")
        self.processes[tier] = subprocess.Popen(
            [sys.executable, "-m", "ray.scripts.scripts", "start", *where, *common],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,  # a Ctrl-C of this script is handled here, not by them
        )
        log.close()

    def logs(self, lines: int = 15) -> str:
        """The last lines each `ray start` wrote."""
        out = []
        for tier in self.processes:
            text = Path(self.temp_dir, f"ray-start-{tier}.log").read_text(errors="replace").splitlines()
            out.append(f"-- {tier} (exit status {self.processes[tier].poll()}):\n" + "\n".join(text[-lines:]))
        return "\n".join(out)

    def stop(self, grace_s: float = 60.0) -> None:
        """Workers first, then the head: SIGTERM lets each drain and end its own processes."""
        for tier in reversed(list(self.processes)):
            process = self.processes[tier]
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=30)
        self._kill_leftovers()

    def _kill_leftovers(self) -> None:
        """Processes of these nodes still alive (a `ray start` killed before it could end them):
        found by this cluster's own temporary folder in their command line."""
        try:
            import psutil
        except ImportError:
            return
        for p in psutil.process_iter(["pid", "cmdline"]):
            if p.pid != os.getpid() and any(self.temp_dir in a for a in p.info["cmdline"] or ()):
                try:
                    p.kill()
                except psutil.Error:
                    pass


def _wait_for_nodes(count: int, deadline: float, starting: subprocess.Popen) -> None:
    """Until `count` nodes are alive; the `ray start` of the last one must not have ended."""
    import ray

    while True:
        alive = sum(1 for n in ray.nodes() if n["Alive"])
        if alive >= count:
            return
        if starting.poll() is not None or time.monotonic() > deadline:
            raise TimeoutError(f"{alive} of {count} Ray nodes up")
        time.sleep(0.5)


def _connect(address: str, namespace: str, deadline: float) -> None:
    import ray

    while True:
        try:
            ray.init(address=address, namespace=namespace, log_to_driver=False)
            return
        except (ConnectionError, RuntimeError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def where_replicas_run(config, detectors: list[str]) -> list[dict]:
    """For each detector application: the node of its replica, that node's label, the label asked."""
    import ray
    from ray import serve

    from media_ray.topology import plan_apps

    key = config.live.tier_label
    labels = {n["NodeID"]: (n.get("Labels") or {}).get(key) for n in ray.nodes() if n["Alive"]}
    rows = []
    for app in plan_apps(config, detectors):
        node = serve.get_app_handle(app.name).stats.remote().result(timeout_s=60)["node_id"]
        asked = config.placement_for(app.detector, app.tier).label_selector.get(key)
        rows.append(
            {"app": app.name, "detector": app.detector, "node_id": node, "label": labels.get(node), "asked": asked}
        )
    return rows


def run(config_path: str, num_cpus: int, timeout_s: float) -> dict:
    import ray
    from ray import serve

    from media_ray.app.live_service import LiveService
    from media_ray.catalog import BrandCatalog
    from media_ray.config import MediaRayConfig

    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # the table is what this prints
    deadline = time.monotonic() + timeout_s
    config = MediaRayConfig.load(config_path)
    tiers = config.live.tiers
    if len(tiers) < 2:
        raise SystemExit(f"{config_path}: live.tiers names {len(tiers)} tier(s); a head and a worker need two")
    temp_dir = tempfile.mkdtemp(prefix="mr3-", dir="/tmp")  # short: Ray's socket paths live under it
    nodes = LocalNodes(temp_dir, num_cpus, config.live.tier_label)
    service = None
    try:
        nodes.start(tiers[0], head=True)
        _connect(nodes.address, config.ray.namespace, deadline)
        for count, tier in enumerate(tiers[1:], start=2):
            # one at a time: nodes of one machine that start together can miss their start-up window
            nodes.start(tier, head=False)
            try:
                _wait_for_nodes(count, deadline, nodes.processes[tier])
            except TimeoutError as e:
                raise TimeoutError(f"{e}; the nodes said:\n{nodes.logs()}") from None
        auth = {"token": config.http.auth.token or secrets.token_urlsafe(24)}  # no token file for a demo
        config = config.model_copy(
            update={
                "ray": config.ray.model_copy(update={"address": nodes.address}),
                "http": config.http.model_copy(
                    update={"port": free_port(), "auth": config.http.auth.model_copy(update=auth)}
                ),
            }
        )
        detectors = list(config.detector_set or [])
        service = LiveService(config, BrandCatalog([]), detectors).start()
        rows = where_replicas_run(config, detectors)
        node_labels = {n["NodeID"]: (n.get("Labels") or {}).get(config.live.tier_label) for n in ray.nodes()}
        return {"address": nodes.address, "temp_dir": temp_dir, "nodes": node_labels, "replicas": rows}
    finally:
        if service is not None:
            service.stop()
        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()
        nodes.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _interrupt(signum, frame) -> None:
    """SIGTERM ends the run as Ctrl-C does: through the clean-up."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(DEFAULT_CONFIG), help="media-ray YAML: live.tiers and placement")
    ap.add_argument("--num-cpus", type=int, default=1, help="CPUs each node offers (default 1)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds for the nodes and applications to come up")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args(argv)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    signal.signal(signal.SIGTERM, _interrupt)
    result = run(args.config, args.num_cpus, args.timeout)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{len(result['nodes'])} nodes: " + ", ".join(f"{n[:12]} {label}" for n, label in result["nodes"].items()))
    for r in result["replicas"]:
        ok = "ok" if r["label"] == r["asked"] or r["asked"] is None else "NOT ON ITS LABEL"
        print(f"{r['app']:<28} node {r['node_id'][:12]}  label {r['label']!s:<8} asked {r['asked']}  {ok}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
