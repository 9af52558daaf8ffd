"""Many files analysed at once on one runtime: bounded concurrency, a bar for the job and one per
file in flight, one output folder per file and `summary.csv` across them.

Each file has its own StreamIngest (decoding where Ray places it) and its own stage chain on
the driver; all of them feed the same detector replicas, whose `@serve.batch` joins the batches
of several files into one model call. A file that fails is reported and the others go on.
"""

from __future__ import annotations

import csv
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from media_ray.config import MediaRayConfig
from media_ray.exposure import ExposureReport
from media_ray.output import AnalysisWriter
from media_ray.report_pages import write_annotated
from media_ray.sources import VideoInfo

log = logging.getLogger(__name__)

SUMMARY_FIELDS = (
    "video",
    "output",
    "status",
    "frames_analysed",
    "duration_s",
    "cuts",
    "brands_found",
    "exposure_s",
    "wall_s",
    "error",
)

_BAR_FORMAT = (
    "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{rate_fmt}, elapsed {elapsed}, remaining {remaining}]"
)


@dataclass
class FileJob:
    """One file of a bulk run: what to read and where its results go."""

    uri: str
    target: Path
    info: VideoInfo | None = None  # None: it could not be opened (`error` says why)
    error: str | None = None
    #: write the video with its boxes drawn here (`analyze --annotate`)
    annotate: Path | None = None

    @property
    def name(self) -> str:
        return self.info.name if self.info is not None else Path(self.uri).stem


@dataclass
class FileOutcome:
    job: FileJob
    report: ExposureReport | None
    wall_s: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def row(self) -> dict[str, object]:
        r = self.report
        brands = sorted(r.brands.items(), key=lambda kv: -kv[1].exposure_s) if r else []
        return {
            "video": self.job.uri,
            "output": str(self.job.target),
            "status": "done" if self.ok else "failed",
            "frames_analysed": r.frames_analysed if r else "",
            "duration_s": "" if r is None or r.duration_s is None else f"{r.duration_s:.3f}",
            "cuts": r.cuts if r else "",
            "brands_found": ";".join(bid for bid, _ in brands),  # brand ids, most exposed first
            "exposure_s": ";".join(f"{bid}={b.exposure_s:.2f}" for bid, b in brands),
            "wall_s": f"{self.wall_s:.2f}",
            "error": self.error or "",
        }


#: what `--annotate` may be named: containers that hold H.264 (or MPEG-4) as PyAV writes it
ANNOTATE_SUFFIXES = (".mp4", ".mkv", ".mov", ".m4v")


def ask_annotation(jobs: list[FileJob], path: str) -> None:
    """`analyze --annotate PATH`: the video's job also writes the video with its boxes drawn to
    PATH. Only for a single video (several would need several names: one line says so); raises
    ValueError with the line to show."""
    target = Path(path)
    if len(jobs) != 1:
        raise ValueError(f"writes one annotated video: give a single video, not {len(jobs)}")
    if target.is_dir():
        raise ValueError(f"{path} is a folder; name the video to write, e.g. {target / 'annotated.mp4'}")
    if target.suffix.lower() not in ANNOTATE_SUFFIXES:
        raise ValueError(f"{path}: name a {', '.join(ANNOTATE_SUFFIXES)} file")
    source = Path(jobs[0].uri)
    if "://" not in jobs[0].uri and source.exists() and source.resolve() == target.resolve():
        raise ValueError(f"{path} is the video being analysed")
    jobs[0].annotate = target


def outputs(job: FileJob) -> list[Path]:
    """The files an analysed job wrote: frames.jsonl, report.json, report.csv, report.html and
    the annotated video, those there are."""
    names = ("frames.jsonl", "report.json", "report.csv", "report.html")
    found = [job.target / n for n in names if (job.target / n).exists()]
    return found + ([job.annotate] if job.annotate is not None and job.annotate.exists() else [])


def write_summary(outcomes: list[FileOutcome], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        w.writeheader()
        for o in outcomes:
            w.writerow(o.row())
    return path


def analyse_file(
    runtime,
    info: VideoInfo,
    target: Path,
    config: MediaRayConfig,
    on_frames: Callable[[int], None] = lambda n: None,
    annotate: Path | None = None,
) -> ExposureReport:
    """One video through the runtime into `target`: frames.jsonl, report.json and the pages of
    `config.report` (report.csv, report.html); with `annotate`, the video with its boxes drawn
    there. `on_frames(n)` as each batch's n results are written."""
    analysis = runtime.analyse(info.uri, stream_id=info.name, duration_s=info.duration_s)
    with AnalysisWriter(target, pages=config.report) as writer:
        for results in analysis:
            for r in results:
                writer.write(r)
            if results:
                on_frames(len(results))
        assert analysis.report is not None
        writer.finish(analysis.report)
    if annotate is not None:
        write_annotated(analysis.report, target, annotate, config.report)
    return analysis.report


class BulkRun:
    """Runs `jobs` on `runtime`, at most `concurrency` at once, in the order given.

    `tqdm` is the progress-bar class (None: no bars); `on_first()` is called once, when the
    first analysed frame of any file is back; `on_done(outcome)` as each file ends.
    """

    def __init__(
        self,
        runtime,
        config: MediaRayConfig,
        jobs: list[FileJob],
        concurrency: int,
        tqdm=None,
        on_first: Callable[[], None] | None = None,
        on_done: Callable[[FileOutcome], None] | None = None,
    ):
        self.runtime = runtime
        self.config = config
        self.jobs = jobs
        self.concurrency = max(1, min(concurrency, len(jobs) or 1))
        self.tqdm = tqdm
        self._on_first = on_first
        self._on_done = on_done or (lambda o: None)
        self._lock = threading.Lock()
        self._slots: queue.SimpleQueue[int] = queue.SimpleQueue()
        for k in range(1, self.concurrency + 1):
            self._slots.put(k)
        self._job_bar = None
        self._files_done = 0

    def run(self) -> list[FileOutcome]:
        expected = [j.info.expected_frames(self.config.sampling.fps) if j.info else 0 for j in self.jobs]
        total = None if any(e is None for e in expected) else sum(e or 0 for e in expected)
        self._job_bar = self._bar(total=total, desc=self._job_desc(), position=0)
        try:
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="media-ray-file") as pool:
                outcomes = list(pool.map(self._one, self.jobs))
        finally:
            if self._job_bar is not None:
                self._job_bar.close()
        return outcomes

    def _job_desc(self) -> str:
        return f"job: {self._files_done}/{len(self.jobs)} files"

    def _bar(self, **kwargs):
        if self.tqdm is None:
            return None
        return self.tqdm(
            unit="frame",
            file=sys.stderr,
            dynamic_ncols=True,
            smoothing=0.1,
            bar_format=_BAR_FORMAT,
            **kwargs,
        )

    def _frames(self, bar, n: int) -> None:
        with self._lock:
            if self._on_first is not None:
                self._on_first()
                self._on_first = None
            if bar is not None:
                bar.update(n)
            if self._job_bar is not None:
                self._job_bar.update(n)

    def _one(self, job: FileJob) -> FileOutcome:
        started = time.perf_counter()
        if job.info is None:
            outcome = FileOutcome(job, None, 0.0, job.error or "cannot be opened")
            self._ended(outcome)
            return outcome
        slot = self._slots.get()
        bar = self._bar(
            total=job.info.expected_frames(self.config.sampling.fps), desc=job.name, position=slot, leave=False
        )
        try:
            report = analyse_file(
                self.runtime, job.info, job.target, self.config, lambda n: self._frames(bar, n), job.annotate
            )
            outcome = FileOutcome(job, report, time.perf_counter() - started)
        except Exception as e:  # one file's failure is its own: the others go on
            log.debug("%s failed", job.uri, exc_info=True)
            outcome = FileOutcome(job, None, time.perf_counter() - started, _one_line(e))
        finally:
            if bar is not None:
                bar.close()
            self._slots.put(slot)
        self._ended(outcome)
        return outcome

    def _ended(self, outcome: FileOutcome) -> None:
        with self._lock:
            self._files_done += 1
            if self._job_bar is not None:
                self._job_bar.set_description_str(self._job_desc())
            self._on_done(outcome)


def _one_line(e: BaseException) -> str:
    """The line of an error a user needs: a remote error's own message, not Ray's traceback."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        e = cause
    text = str(e).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    line = lines[-1].strip() if lines else type(e).__name__
    return line if len(line) <= 300 else line[:297] + "..."
