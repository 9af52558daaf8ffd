"""The Grafana dashboard in cluster/ charts media-ray's metrics, by the names Ray exports them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from actors.metrics import METRICS, exported_names

DASHBOARD = Path(__file__).resolve().parents[2] / "cluster" / "grafana-media-ray.json"


def _exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def test_every_media_ray_metric_is_charted_by_a_panel():
    exprs = _exprs()
    assert exprs
    for spec in METRICS.values():
        names = exported_names(spec)
        assert any(re.search(rf"\b{n}\b", e) for e in exprs for n in names), f"{spec.name} ({names}) has no panel"


def test_every_panel_names_only_metrics_that_exist():
    known = {n for spec in METRICS.values() for n in exported_names(spec)}
    for expr in _exprs():
        named = set(re.findall(r"\bray_media_ray_\w+", expr))
        assert named, expr
        assert named <= known, f"{expr}: no such metric {named - known}"
