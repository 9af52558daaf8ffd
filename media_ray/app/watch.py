"""`media-ray watch`: recordings analysed as they land, on one runtime kept up for the watch.

Each poll (`watch.poll_s`) the `Watcher` (`media_ray.watching`) gives the files that have
settled and are not in the ledger; they are analysed as `analyze` analyses several files
(`BulkRun`, `analyse_file`: the same detectors, chain and output files, `out/NAME/`), and each
is written to the ledger as it ends, done or failed, so that no later poll and no restarted
watch takes it again. With `--out gs://BUCKET/PREFIX/` each file's folder and the ledger are
uploaded as it ends (the ledger is read from there when a watch starts).

The first SIGINT or SIGTERM stops taking files: the files being analysed are finished and
recorded, then the runtime stops and the command exits 0. A second signal stops at once; the
files it interrupted are not in the ledger, so the next watch analyses them again.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from media_ray.app.bulk import BulkRun, FileJob, FileOutcome
from media_ray.app.runtime import MediaRayRuntime
from media_ray.catalog import BrandCatalog
from media_ray.cloud_storage import OutputFolder
from media_ray.config import MediaRayConfig
from media_ray.sources import SourceError, probe
from media_ray.watching import Landed, Ledger, Watcher, check_source

log = logging.getLogger(__name__)


@dataclass
class WatchRun:
    """One watch: `source` followed, results into `out` (see the module's doc).

    `say(line)` is told what happens; `on_done(outcome, where)` as each file ends, with the
    place its results went."""

    source: str
    out: OutputFolder
    config: MediaRayConfig
    catalog: BrandCatalog
    detectors: list[str]
    say: Callable[[str], None] = lambda line: None
    on_done: Callable[[FileOutcome, str], None] = lambda outcome, where: None
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        check_source(self.source)
        name = self.config.watch.ledger
        self.ledger = Ledger(self.out.fetch(name) or self.out.path / name)
        self.watcher = Watcher(self.source, self.ledger, self.config.watch)
        self.analysed = 0

    def run(self, signals: bool = True) -> int:
        """Until `stop` is set; with `signals`, by SIGINT or SIGTERM (`handle_signals`)."""
        runtime = MediaRayRuntime(self.config, self.catalog, self.detectors)
        try:
            runtime.start()
            if signals:  # after Ray's start, which sets a SIGTERM handler of its own
                handle_signals(self.stop)
            self.say(
                f"watching {self.source} every {self.config.watch.poll_s:g} s with {', '.join(self.detectors)} "
                f"(a file is taken once unchanged for {self.config.watch.settle_s:g} s); results in "
                f"{self.out.target}; Ctrl-C stops"
            )
            first = True
            while not self.stop.is_set():
                ready = self.watcher.poll()
                if first:
                    self.say(
                        f"{self.watcher.known} of {self.watcher.listed} videos there were analysed before "
                        f"({self.ledger.path.name})"
                    )
                    first = False
                if ready:
                    self._analyse(runtime, ready)
                self.stop.wait(self.config.watch.poll_s)
        finally:
            runtime.stop()
            self.out.close()
        self.say(f"watch stopped: {self.analysed} files analysed")
        return 0

    def _analyse(self, runtime: MediaRayRuntime, ready: list[Landed]) -> None:
        jobs, taken = [], {}
        for item in ready:
            target = self.out.path / self.ledger.name_for(item)
            try:
                job = FileJob(item.uri, target, probe(item.uri))
            except SourceError as e:
                job = FileJob(item.uri, target, None, str(e))
            jobs.append(job)
            taken[id(job)] = item
        self.say(f"taking {', '.join(i.uri for i in ready)}")

        def ended(outcome: FileOutcome) -> None:  # BulkRun calls it under its lock
            item = taken[id(outcome.job)]
            report = outcome.report
            self.ledger.record(
                item,
                "done" if outcome.ok else "failed",
                outcome.error,
                frames_analysed=report.frames_analysed if report else None,
                wall_s=round(outcome.wall_s, 3),
            )
            self.analysed += 1
            self.out.upload(self.ledger.name_for(item))
            self.out.upload(self.ledger.path.name)
            self.on_done(outcome, self.out.uri_of(outcome.job.target))

        BulkRun(runtime, self.config, jobs, runtime.files_in_flight(len(jobs)), None, None, ended).run()


def handle_signals(stop: threading.Event) -> None:
    """SIGINT and SIGTERM set `stop`; a second one raises KeyboardInterrupt (stop at once)."""

    def on_signal(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
