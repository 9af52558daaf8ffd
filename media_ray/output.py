"""Writing an analysis to disk in the output contract: frames.jsonl, report.json (and, when
asked, report.csv and report.html for people: `media_ray.report_pages`).

`frames.jsonl` holds one frame record per analysed frame, in time order, frames without
detections included. Per-frame signals that are not detections (the `visual` detector's)
go to `signals.jsonl` beside it, so the frame records keep their exact shape.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from media_ray.config_report import ReportConfig
from media_ray.exposure import ExposureReport
from media_ray.model import FrameResult
from media_ray.report_pages import write_pages


class AnalysisWriter:
    def __init__(self, out_dir: str | Path, pages: ReportConfig | None = None):
        """`pages`: write report.csv and report.html (with its thumbnails) beside report.json,
        as it says; None: report.json only."""
        self.out_dir = Path(out_dir)
        self.pages = pages
        #: the files the pages took, once `finish` has written them
        self.pages_written: list[Path] = []
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._frames = open(self.out_dir / "frames.jsonl", "w")
        self._signals: TextIO | None = None

    def write(self, result: FrameResult) -> None:
        self._frames.write(json.dumps(result.record()) + "\n")
        if result.signals:
            if self._signals is None:
                self._signals = open(self.out_dir / "signals.jsonl", "w")
            self._signals.write(json.dumps({"t": round(result.t, 6), "frame": result.frame, **result.signals}) + "\n")

    def finish(self, report: ExposureReport) -> Path:
        self.close()
        path = self.out_dir / "report.json"
        path.write_text(report.model_dump_json(indent=1) + "\n")
        if self.pages is not None:
            self.pages_written = write_pages(report, self.out_dir, self.pages)
        return path

    def close(self) -> None:
        self._frames.close()
        if self._signals is not None:
            self._signals.close()

    def __enter__(self) -> AnalysisWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
