"""Placement by node label: each tier's detector replicas on the node of that tier, and a
stream asking for a tier with no node served by the fallback tier, which its status shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCENARIO = Path(__file__).resolve().parent.parent / "placement_scenario.py"


def run_scenario(sample, with_lan: bool) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SCENARIO.parent), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, str(SCENARIO), str(sample["clip"]), str(sample["logos"]), "1" if with_lan else "0"],
        capture_output=True,
        text=True,
        timeout=420,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_each_tiers_replicas_run_on_the_node_with_its_label(sample):
    out = run_scenario(sample, with_lan=True)
    nodes = out["nodes"]
    assert len(set(nodes.values())) == 3
    assert out["replicas"] == nodes  # tier -> node id of its replica, as Ray reports it
    for tier in ("local", "lan", "cloud"):
        stream = out["streams"][tier]
        assert stream["state"] == "ended" and stream["frames"] > 0
        assert stream["tier"] == tier and stream["fallback"] is False
        assert stream["nodes"] == [nodes[tier]]  # every frame analysed on that node


def test_without_a_lan_node_a_lan_stream_is_served_by_the_fallback_tier(sample):
    out = run_scenario(sample, with_lan=False)
    nodes = out["nodes"]
    assert "lan" not in out["replicas"]  # no node carries the label: the lan tier never starts
    lan = out["streams"]["lan"]
    assert lan["state"] == "ended" and lan["frames"] > 0
    assert lan["fallback"] is True and lan["tier"] == "local"
    assert lan["nodes"] == [nodes["local"]]
