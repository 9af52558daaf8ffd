"""The `media-ray` command.

    media-ray analyze VIDEO... --brands DIR [--out DIR] [--fps N] [--detectors a,b] [--clip-model M]
    media-ray serve [--brands DIR] [--host H] [--port P]
    media-ray watch DIR|gs://BUCKET/PREFIX/ --brands DIR [--out DIR|gs://...] [--fps N] [--detectors a,b]
    media-ray sample DIR
    media-ray eval CLIPS... --brands DIR [--fps N] [--detectors a,b]
    media-ray add-references VIDEO (FRAMES_JSONL | --boxes FILE) --brands DIR [--per-brand N]
    media-ray bench | bench-detectors | bench-scale | bench-live
    media-ray config-reference [--check FILE]

The CLI checks what a user gave it (videos, brand folder, detector names, an explicitly
requested CLIP model) before starting anything, and reports a bad input in one line with exit
status 2. Ray and its layers (`actors/`, `deployments/`) are imported only by the commands that run
on Ray, so `--help` and mistakes answer at once.
"""

from __future__ import annotations

import argparse
import csv
import glob
import logging
import signal
import sys
import time
from pathlib import Path
from typing import NoReturn

from media_ray.catalog import BrandCatalog, CatalogError
from media_ray.cloud_storage import store_for
from media_ray.config import MediaRayConfig
from media_ray.detectors import DetectorError, default_set, detector_class, parse_params
from media_ray.exposure import ExposureReport
from media_ray.references import ReferenceSettings
from media_ray.sources import VIDEO_SUFFIXES, SourceError, probe, videos_in

log = logging.getLogger("media_ray")

EXIT_USAGE = 2


class UsageError(Exception):
    """A mistake in what the user asked for: reported in one line, exit status 2."""


def _fail(message: str) -> NoReturn:
    raise UsageError(message)


def expand_videos(paths: list[str]) -> list[str]:
    """Video paths and URLs; a folder stands for the videos in it, in name order, a glob for the
    paths it matches, `@FILE` for the paths FILE lists (a line each, relative to FILE's folder)."""
    out: list[str] = []
    for p in paths:
        path = Path(p)
        if p.startswith("@"):
            out.extend(expand_videos(_listed(Path(p[1:]))))
        elif p.endswith("/") and (store := store_for(p)) is not None:  # a folder of objects
            found = [o.uri for o in store.list(p)]
            if not found:
                _fail(f"{p}: folder holds no videos ({', '.join(VIDEO_SUFFIXES)})")
            out.extend(found)
        elif path.is_dir():
            found = [str(f) for f in videos_in(path)]
            if not found:
                _fail(f"{p}: folder holds no videos ({', '.join(VIDEO_SUFFIXES)})")
            out.extend(found)
        elif not path.exists() and glob.has_magic(p) and "://" not in p:
            found = sorted(glob.glob(p, recursive=True))
            if not found:
                _fail(f"{p}: matches no file")
            out.extend(found)
        else:
            out.append(p)
    return out


def _listed(path: Path) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        _fail(f"{path}: cannot read the list of videos ({e.__class__.__name__})")
    entries = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not entries:
        _fail(f"{path}: lists no videos")
    return [e if "://" in e or Path(e).is_absolute() else str(path.parent / e) for e in entries]


def build_config(args: argparse.Namespace) -> MediaRayConfig:
    try:
        config = MediaRayConfig.load(args.config)
    except (OSError, ValueError) as e:
        _fail(f"configuration: {str(e).splitlines()[0]}")
    if args.fps is not None:
        config.sampling.fps = args.fps
    if args.batch_size is not None:
        config.sampling.batch_size = args.batch_size
    if args.clip_model is not None:
        config.detectors.clip.model = args.clip_model
    return config


def choose_detectors(args: argparse.Namespace, config: MediaRayConfig) -> list[str]:
    """The detectors named on the command line or in the config, else the default set."""
    named = [n.strip() for n in args.detectors.split(",") if n.strip()] if args.detectors else config.detector_set
    if named:
        for name in named:
            cls = detector_class(name)
            params = parse_params(name, config.params_for(name))
            reason = cls.unavailable_reason(params) if cls.needs_weights else None
            if reason:
                _fail(f"detector {name!r} cannot run: {reason}")
        return named
    chosen, left_out = default_set(config.params_for)
    for name, reason in left_out.items():
        print(f"note: {name} is not used: {reason}", file=sys.stderr)
    return chosen


def load_catalog(args: argparse.Namespace, empty_ok: bool = False) -> BrandCatalog:
    """The catalogue the options name; none named is an empty one where `empty_ok` (a server,
    whose brands are added through the API), else a mistake."""
    if args.brands and args.brand_names:
        _fail("give --brands or --brand-names, not both")
    if args.brand_names:
        return BrandCatalog.from_names(args.brand_names.split(","))
    if not args.brands and empty_ok:
        return BrandCatalog([])
    if not args.brands:
        _fail("a brand catalogue is needed: --brands DIR (reference images) or --brand-names a,b,c")
    return BrandCatalog.from_folder(args.brands)


def format_report(report: ExposureReport) -> str:
    """The exposure table of one video, as the CLI prints it."""
    lines = [f"\n{report.video}: {report.frames_analysed} frames at {report.fps_analysed:g} frames/s"]
    if not report.brands:
        return "\n".join([*lines, "no brands found"])
    rows = [("brand", "on screen (s)", "appearances", "largest share")]
    for bid, b in sorted(report.brands.items(), key=lambda kv: -kv[1].exposure_s):
        share = "-" if b.max_share is None else f"{100 * b.max_share:.1f}%"
        rows.append(
            (
                b.name if b.name == bid else f"{b.name} ({bid})",
                f"{b.exposure_s:.1f}",
                str(len(b.appearances)),
                share,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for n, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_analyze(args: argparse.Namespace) -> int:
    if store_for(args.out) is not None:
        return _into_object_store(cmd_analyze, args)
    config = build_config(args)
    if args.concurrency is not None:
        if args.concurrency < 0:
            _fail("--concurrency must be 0 (as many as the cluster's CPUs) or more")
        config.pipeline.files_in_flight = args.concurrency
    videos = expand_videos(args.videos)
    out = Path(args.out)
    jobs = _file_jobs(videos, out)
    if args.annotate:
        from media_ray.app.bulk import ask_annotation

        try:
            ask_annotation(jobs, args.annotate)
        except ValueError as e:
            _fail(f"--annotate: {e}")
    catalog = load_catalog(args)
    detectors = choose_detectors(args, config)

    from tqdm import tqdm

    # the Ray layer, loaded only to run
    from media_ray.app.bulk import BulkRun, outputs, write_summary
    from media_ray.app.runtime import DeploymentFailed, DeploymentTimeout, MediaRayRuntime

    if not args.verbose:  # Ray Serve sets up its logger at INFO when imported
        logging.getLogger("ray.serve").setLevel(logging.WARNING)

    runtime = MediaRayRuntime(config, catalog, detectors, keep_deployments=config.ray.keep_deployments)
    started = time.perf_counter()
    try:
        runtime.start()
        ready = time.perf_counter() - started
        concurrency = runtime.files_in_flight(len(jobs))
        print(
            f"analysing {len(jobs)} video(s), {concurrency} at once, with {', '.join(detectors)} on Ray "
            f"({_which_ray(runtime)}; ready after {ready:.1f} s)",
            file=sys.stderr,
        )
        _say_ray_urls(runtime)

        def done(outcome) -> None:
            if outcome.ok:
                tqdm.write(format_report(outcome.report), file=sys.stdout)
                tqdm.write(f"wrote {', '.join(map(str, outputs(outcome.job)))}", file=sys.stderr)
            else:
                tqdm.write(f"media-ray: failed: {outcome.job.uri}: {outcome.error}", file=sys.stderr)

        bulk = BulkRun(
            runtime, config, jobs, concurrency, None if args.no_progress else tqdm, _time_to_first(started), done
        )
        outcomes = bulk.run()
    except (DeploymentFailed, DeploymentTimeout) as e:
        _fail(str(e))
    finally:
        runtime.stop()
    failed = [o for o in outcomes if not o.ok]
    if len(jobs) > 1:
        summary = write_summary(outcomes, out / "summary.csv")
        print(
            f"{len(jobs) - len(failed)} of {len(jobs)} videos analysed in {time.perf_counter() - started:.1f} s; "
            f"wrote {summary}",
            file=sys.stderr,
        )
    if failed and len(jobs) == 1:
        _fail(f"{failed[0].job.uri}: {failed[0].error}")
    return 1 if failed else 0


def _say_ray_urls(runtime) -> None:
    """One line: the Ray dashboard's URL and where Prometheus scrapes Ray's metrics, as known."""
    parts = [f"Ray dashboard: {runtime.dashboard_url}"] if runtime.dashboard_url else []
    if runtime.metrics_url:
        parts.append(f"Ray metrics for Prometheus: {runtime.metrics_url}")
    if parts:
        print("; ".join(parts), file=sys.stderr)


def _which_ray(runtime) -> str:
    if runtime.owns_ray:
        return "a local Ray"
    reused = len(runtime.reused)
    return f"a running Ray, {reused} of {len(runtime.apps)} detector applications reused"


def _into_object_store(cmd, args: argparse.Namespace) -> int:
    """`cmd` with its `--out` a local temporary folder, whose files are then uploaded under the
    `--out` prefix (`gs://BUCKET/PREFIX/`); summary.csv names the outputs by their URIs."""
    from media_ray.cloud_storage import OutputFolder

    with OutputFolder(args.out) as folder:
        args.out = str(folder.path)
        status = cmd(args)
        _rebase_summary(folder.path / "summary.csv", folder)
    print(f"uploaded {len(folder.uploaded)} files under {folder.target}", file=sys.stderr)
    return status


def _rebase_summary(path: Path, folder) -> None:
    if not path.exists():
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = list(reader.fieldnames or ()), list(reader)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows({**row, "output": folder.uri_of(Path(row["output"]))} for row in rows)


def _file_jobs(videos: list[str], out: Path):
    """A job per video, each with its output folder. One video must open (else status 2); of
    several, one that does not is reported as failed and the others go on."""
    from media_ray.app.bulk import FileJob

    if len(videos) == 1:
        info = probe(videos[0])
        return [FileJob(videos[0], out, info)]
    jobs = []
    for v in videos:
        try:
            jobs.append(FileJob(v, out, probe(v)))
        except SourceError as e:
            jobs.append(FileJob(v, out, None, str(e)))
    for job, name in zip(jobs, _unique_names([j.name for j in jobs])):
        job.target = out / name
    return jobs


def _time_to_first(started: float):
    """What says, once, how long the job took to its first analysed frame."""

    def said() -> None:
        print(f"first analysed frame after {time.perf_counter() - started:.1f} s", file=sys.stderr)

    return said


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}-{seen[n]}")
    return out


def cmd_serve(args: argparse.Namespace) -> int:
    config = build_config(args)
    if args.host:
        config.http.host = args.host
    if args.port:
        config.http.port = args.port
    if config.live.hls_upload:  # its bucket, before anything starts
        if (store := store_for(config.live.hls_upload)) is None:
            _fail(f"live.hls_upload: {config.live.hls_upload!r} is not gs://BUCKET/PREFIX/")
        store.check_folder(config.live.hls_upload)
    catalog = load_catalog(args, empty_ok=True)
    detectors = choose_detectors(args, config)

    import time

    from media_ray.app.live_service import LiveService
    from media_ray.app.runtime import DeploymentFailed, DeploymentTimeout
    from media_ray.auth import TokenError

    if not args.verbose:
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
    # SIGTERM (docker stop, systemd, Kubernetes) stops as Ctrl-C does: streams ended, their
    # folders removed, Ray shut down
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        service = LiveService(config, catalog, detectors)
    except TokenError as e:
        _fail(f"API token: {e}")
    try:
        service.start()
    except (DeploymentFailed, DeploymentTimeout) as e:
        _fail(str(e))
    print(
        f"media-ray is serving on {service.url} (detectors: {', '.join(detectors)}); Ctrl-C stops it",
        file=sys.stderr,
    )
    _say_ray_urls(service.runtime)
    if service.token.generated:  # shown this once; later starts read it from the file
        print(
            f"a new API token was generated and kept in {service.token.path}; open the page with it:\n"
            f"  {service.url}/#token={service.token.token}",
            file=sys.stderr,
        )
    try:
        while True:
            time.sleep(3600)
    except SystemExit:
        print("media-ray: stopping", file=sys.stderr)
        return 0
    finally:
        service.stop()


def _exit_on_signal(signum, frame) -> None:
    raise SystemExit(0)


def cmd_watch(args: argparse.Namespace) -> int:
    config = build_config(args)
    catalog = load_catalog(args)
    detectors = choose_detectors(args, config)

    from media_ray.app.runtime import DeploymentFailed, DeploymentTimeout
    from media_ray.app.watch import WatchRun
    from media_ray.cloud_storage import OutputFolder

    if not args.verbose:
        logging.getLogger("ray.serve").setLevel(logging.WARNING)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def done(outcome, where: str) -> None:
        if outcome.ok:
            print(format_report(outcome.report), flush=True)
            say(f"wrote {where}")
        else:
            say(f"media-ray: failed: {outcome.job.uri}: {outcome.error}")

    run = WatchRun(args.source, OutputFolder(args.out), config, catalog, detectors, say, done)
    try:
        return run.run()
    except (DeploymentFailed, DeploymentTimeout) as e:
        _fail(str(e))


def cmd_sample(args: argparse.Namespace) -> int:
    from media_ray.samples import write_sample

    logos, clip = write_sample(args.folder)
    print(f"wrote {clip} (with {clip.with_name(clip.stem + '.gt.json').name}) and the catalogue {logos}/")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from media_ray.evaluation import run_eval

    return run_eval(args)


def cmd_add_references(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from media_ray.references import ReferenceInputError, add_references, from_boxes, from_frames

    if (args.frames is None) == (args.boxes is None):
        _fail("give a FRAMES_JSONL of detections or --boxes FILE, one of them")
    probe(args.video)
    try:
        settings = ReferenceSettings(min_score=args.min_score, per_brand=args.per_brand, margin=args.margin)
        found = from_frames(args.frames, settings.min_score) if args.frames else from_boxes(args.boxes)
        written = add_references(args.video, found, args.brands, settings)
    except ValidationError as e:
        _fail(f"add-references: {e.errors()[0]['loc'][0]}: {e.errors()[0]['msg']}")
    except ReferenceInputError as e:
        _fail(str(e))
    for brand, paths in written.items():
        print(f"{brand}: {len(paths)} reference(s) added: {', '.join(p.name for p in paths)}")
    if not written:
        print(f"no box of {len(found)} was taken (score, size, brand): nothing written")
    return 0


def cmd_bench_live(args: argparse.Namespace) -> int:
    from media_ray.app.bench import run_live_bench

    return run_live_bench(args)


def cmd_bench_detectors(args: argparse.Namespace) -> int:
    from media_ray.bench import run_detector_bench

    return run_detector_bench(args)


def cmd_bench_scale(args: argparse.Namespace) -> int:
    from media_ray.scale import run_scale, usable_cores

    try:
        workers = sorted({int(w) for w in args.workers.split(",") if w.strip()})
    except ValueError:
        workers = []
    if not workers or workers[0] < 1:
        _fail(f"--workers wants numbers from 1, comma-separated: {args.workers!r}")
    if args.cores_per_worker < 1 or workers[-1] * args.cores_per_worker > len(usable_cores()):
        _fail(
            f"{workers[-1]} workers of {args.cores_per_worker} cores need "
            f"{workers[-1] * args.cores_per_worker} cores; {len(usable_cores())} are usable here"
        )
    config = MediaRayConfig.load(args.config)
    config.sampling.fps = args.fps
    names = [n.strip() for n in args.detectors.split(",") if n.strip()] if args.detectors else None
    about, rows = run_scale(args.video, args.brands, names, config, workers, args.cores_per_worker, args.seconds)
    print(
        f"video {about['video']}, {about['frames']} frames at {args.fps:g} frames/s, detectors "
        f"{'+'.join(about['detectors'])}; {about['cores']} cores usable, {args.cores_per_worker} a worker"
    )
    base = rows[0].fps / rows[0].workers  # frames/s a worker, with the fewest workers
    print(
        f"{'workers':>8} {'frames':>7} {'seconds':>8} {'frames/s':>9} "
        f"{'vs ' + str(rows[0].workers):>7} {'per worker':>11}"
    )
    for r in rows:
        print(
            f"{r.workers:>8} {r.frames:>7} {r.seconds:>8.2f} {r.fps:>9.2f} {r.fps / rows[0].fps:>7.2f} "
            f"{r.fps / r.workers / base:>10.0%}"
        )
    return 0


def cmd_config_reference(args: argparse.Namespace) -> int:
    from media_ray.configdoc import render, undocumented

    text = render()
    missing = undocumented()
    if missing:
        _fail(f"configuration fields without a description: {', '.join(missing)}")
    if args.check is None:
        sys.stdout.write(text)
        return 0
    current = Path(args.check).read_text() if Path(args.check).exists() else ""
    if current != text:
        print(f"{args.check} is not current: run `media-ray config-reference > {args.check}`", file=sys.stderr)
        return 1
    print(f"{args.check} is current", file=sys.stderr)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from media_ray.app.bench import run_bench

    return run_bench(args)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="media-ray", description="Find brands in video, on Ray.")
    ap.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = ap.add_subparsers(dest="command", required=True)

    a = sub.add_parser("analyze", help="analyse video files or URLs and report brand exposure")
    a.add_argument(
        "videos",
        nargs="+",
        help="video files, folders of videos, globs ('rec/*.mp4'), list files (@list.txt: a path a line), "
        "or http(s)/HLS URLs",
    )
    a.add_argument("--brands", help="brand catalogue folder: BRAND.png|jpg and an optional brands.json")
    a.add_argument("--brand-names", help="comma-separated brand names, for zero-shot detectors")
    a.add_argument("--out", default="out", help="output folder (default: ./out)")
    a.add_argument("--fps", type=float, help="frames analysed per second of video (default 5)")
    a.add_argument("--batch-size", type=int, help="frames per batch sent to the detectors")
    a.add_argument("--detectors", help="comma-separated detector names (default: all that can run here)")
    a.add_argument("--clip-model", help="CLIP model id or local folder (default openai/clip-vit-base-patch32)")
    a.add_argument("--config", help="YAML configuration file")
    a.add_argument(
        "--concurrency",
        type=int,
        help="videos analysed at once (default: pipeline.files_in_flight; 0: as many as the cluster's CPUs)",
    )
    a.add_argument("--no-progress", action="store_true", help="no progress bars")
    a.add_argument(
        "--annotate", metavar="FILE.mp4", help="also write the video with the boxes drawn (a single video only)"
    )
    a.set_defaults(func=cmd_analyze)

    v = sub.add_parser("serve", help="serve the live API and player page (streams, RTMP, webcam)")
    v.add_argument(
        "--brands",
        help="brand catalogue folder: BRAND.png|jpg and an optional brands.json (default: none, add them on the page)",
    )
    v.add_argument("--brand-names", help="comma-separated brand names, for zero-shot detectors")
    v.add_argument("--host", help="HTTP host (default 127.0.0.1)")
    v.add_argument("--port", type=int, help="HTTP port (default 8000)")
    v.add_argument("--detectors", help="comma-separated detector names (default: all that can run here)")
    v.add_argument("--clip-model", help="CLIP model id or local folder")
    v.add_argument("--config", help="YAML configuration file")
    v.set_defaults(func=cmd_serve, fps=None, batch_size=None)

    w = sub.add_parser("watch", help="analyse recordings as they land in a folder or gs:// prefix, each once")
    w.add_argument("source", help="folder, or gs://BUCKET/PREFIX/, that recordings are written to")
    w.add_argument("--brands", help="brand catalogue folder: BRAND.png|jpg and an optional brands.json")
    w.add_argument("--brand-names", help="comma-separated brand names, for zero-shot detectors")
    w.add_argument(
        "--out", default="out", help="output folder or gs://BUCKET/PREFIX/: NAME/ a recording, and the ledger"
    )
    w.add_argument("--fps", type=float, help="frames analysed per second of video (default 5)")
    w.add_argument("--batch-size", type=int, help="frames per batch sent to the detectors")
    w.add_argument("--detectors", help="comma-separated detector names (default: all that can run here)")
    w.add_argument("--clip-model", help="CLIP model id or local folder")
    w.add_argument("--config", help="YAML configuration file (`watch`: poll_s, settle_s, ledger)")
    w.set_defaults(func=cmd_watch)

    s = sub.add_parser("sample", help="write a sample clip and brand catalogue to try media-ray on")
    s.add_argument("folder", help="where to write sample.mp4 and logos/")
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("eval", help="score detectors on clips with ground truth (NAME.mp4 + NAME.gt.json)")
    e.add_argument("clips", nargs="+", help="clips with a NAME.gt.json beside them, or folders of them")
    e.add_argument("--brands", required=True, help="brand catalogue folder")
    e.add_argument("--fps", type=float, default=5.0, help="frames analysed per second of video")
    e.add_argument("--detectors", help="comma-separated detector names (default: the default set)")
    e.add_argument("--out", help="keep each clip's frames.jsonl and report.json under this folder")
    e.add_argument("--config", help="YAML configuration file")
    e.set_defaults(func=cmd_eval)

    r = sub.add_parser("add-references", help="add crops of footage to brands as further reference images")
    r.add_argument("video", help="the video the boxes are in")
    r.add_argument("frames", nargs="?", help="frames.jsonl of an analysis of the video: its boxed detections")
    r.add_argument("--boxes", help="instead of FRAMES_JSONL: a JSON list of {t, brand, box} drawn by a user")
    r.add_argument("--brands", required=True, help="brand catalogue folder; crops go to DIR/BRAND/")
    for flag, field in (("--min-score", "min_score"), ("--per-brand", "per_brand"), ("--margin", "margin")):
        spec = ReferenceSettings.model_fields[field]
        r.add_argument(flag, type=type(spec.default), default=spec.default, help=f"{spec.description} (%(default)s)")
    r.set_defaults(func=cmd_add_references)

    b = sub.add_parser("bench", help="measure decoding, the CLIP detector alone, and the Ray pipeline")
    b.add_argument("--video", help="video to use (default: a generated 1280x720 clip)")
    b.add_argument("--seconds", type=float, default=20.0, help="length of the generated clip")
    b.add_argument("--fps", type=float, default=5.0, help="frames analysed per second of video")
    b.add_argument("--batch-size", type=int, default=8)
    b.add_argument("--preset", default="vit-b-32", help="random CLIP size: vit-b-32 or tiny")
    b.add_argument("--config", help="YAML configuration file")
    b.set_defaults(func=cmd_bench)

    bd = sub.add_parser("bench-detectors", help="measure the weight-free detectors, alone and as a set")
    bd.add_argument("--video", help="video to use (default: a generated 1280x720 clip)")
    bd.add_argument("--brands", help="brand catalogue folder (default: 10 generated brands)")
    bd.add_argument("--detectors", help="comma-separated detector names (default: the default set)")
    bd.add_argument("--seconds", type=float, default=20.0, help="length of the generated clip")
    bd.add_argument(
        "--background",
        default="scenery",
        choices=["scenery", "noise"],
        help="background of the generated clip: muted scenery, or saturated colour noise "
        "(a worst case for colour proposals)",
    )
    bd.add_argument("--fps", type=float, default=5.0, help="frames analysed per second of video")
    bd.add_argument("--batch-size", type=int, help="frames per batch (default: sampling.batch_size)")
    bd.add_argument("--config", help="YAML configuration file")
    bd.set_defaults(func=cmd_bench_detectors)

    bs = sub.add_parser(
        "bench-scale", help="the default set's frames/s with 1, 2, ... worker processes, a core each (no Ray)"
    )
    bs.add_argument("--workers", default="1,2", help="comma-separated numbers of workers to measure")
    bs.add_argument("--cores-per-worker", type=int, default=1, help="cores each worker is pinned to")
    bs.add_argument("--video", help="video to use (default: a generated 1280x720 clip)")
    bs.add_argument("--brands", help="brand catalogue folder (default: 10 generated brands)")
    bs.add_argument("--detectors", help="comma-separated detector names (default: the default set)")
    bs.add_argument("--seconds", type=float, default=20.0, help="length of the generated clip")
    bs.add_argument("--fps", type=float, default=5.0, help="frames analysed per second of video")
    bs.add_argument("--config", help="YAML configuration file")
    bs.set_defaults(func=cmd_bench_scale)

    bl = sub.add_parser("bench-live", help="live latency for 1 and N simultaneous streams")
    bl.add_argument("--video", help="video to play as live (default: a generated 1280x720 clip)")
    bl.add_argument("--seconds", type=float, default=20.0, help="length of the generated clip")
    bl.add_argument("--fps", type=float, default=2.0, help="frames analysed per second of each stream")
    bl.add_argument("--streams", type=int, nargs="+", default=[1, 4], help="simultaneous streams per run")
    bl.add_argument("--preset", default="vit-b-32", help="random CLIP size: vit-b-32 or tiny")
    bl.add_argument(
        "--detectors",
        default="clip",
        help="comma-separated detector names, or `default` for the weight-free default set (default: clip)",
    )
    bl.add_argument("--config", help="YAML configuration file")
    bl.set_defaults(func=cmd_bench_live)

    cr = sub.add_parser("config-reference", help="print the configuration reference (Markdown)")
    cr.add_argument("--check", metavar="FILE", help="exit 1 unless FILE holds the current reference")
    cr.set_defaults(func=cmd_config_reference)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # Ray's note that token auth is on invites turning it off; its warning when off stays
    logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(
        lambda record: not record.getMessage().startswith("Token authentication is enabled")
    )
    try:
        return args.func(args)
    except (UsageError, SourceError, CatalogError, DetectorError) as e:
        print(f"media-ray: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("media-ray: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
