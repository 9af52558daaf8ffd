"""cluster/local_three_nodes.py as a user runs it: a head and two labelled workers started with
`ray start` on this machine, media-ray's applications placed on them by label, and every process
it started gone when it ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "cluster" / "local_three_nodes.py"
CONFIG = ROOT / "cluster" / "local-three-nodes.yaml"


def test_each_replica_runs_on_a_node_with_the_label_its_placement_asks_for():
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "disabled"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--json", "--timeout", "240"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    config = yaml.safe_load(CONFIG.read_text())
    key = config["live"]["tier_label"]
    # a node per tier, each with its own label
    assert sorted(out["nodes"].values()) == sorted(config["live"]["tiers"])
    assert {r["detector"] for r in out["replicas"]} == set(config["detector_set"])
    for r in out["replicas"]:
        asked = config["placement"][r["detector"]]["label_selector"][key]
        assert r["asked"] == asked
        assert out["nodes"][r["node_id"]] == asked  # the node Ray says the replica is on carries it
    assert len({r["node_id"] for r in out["replicas"]}) == len(config["live"]["tiers"])
    leftovers = [
        p.pid for p in psutil.process_iter(["cmdline"]) if any(out["temp_dir"] in a for a in p.info["cmdline"] or ())
    ]
    assert leftovers == []  # its nodes' processes went with it
    assert not Path(out["temp_dir"]).exists()
