"""report.csv and report.html: an analysis' exposure for people, beside report.json.

`report.csv` has a row per appearance, in time order, with the columns of `CSV_FIELDS`:
the video, the brand's id and name, the appearance's number within the brand (from 1), its
start, end and seconds, its best score and mean share of the screen, then its valuation
(`media_ray.valuation`): position (`centre`, `edge`, `corner`), size, sharpness and clarity
scores, solus seconds, quality index, seconds at full quality, media value and currency
(empty without a rate), the time of its best frame and that frame's thumbnail (a path relative
to the report, empty when none was written).

`report.html` is one self-contained page (inline CSS and SVG, nothing fetched from anywhere):
a timeline of the brands' appearances with the shot cuts (from frames.jsonl), a bar per brand of its seconds on
screen (the solus part darker) with its figures, and each appearance's best frame with its box
as a thumbnail (JPEG files in `thumbs/` beside the page, so the page stays small however many
appearances there are and the CSV can point at them).
"""

from __future__ import annotations

import csv
import html
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

from media_ray.annotate import (
    annotate_video,
    brand_colours,
    css_colour,
    draw_boxes,
    grab_frames,
    read_records,
    thumbnail,
    write_jpeg,
)
from media_ray.config_report import ReportConfig
from media_ray.exposure import Appearance, BrandExposure, ExposureReport

log = logging.getLogger(__name__)

CSV_FIELDS = (
    "video",
    "brand",
    "name",
    "appearance",
    "start",
    "end",
    "seconds",
    "max_score",
    "mean_share",
    "position",
    "size",
    "sharpness",
    "clarity",
    "solus_s",
    "quality",
    "quality_s",
    "media_value",
    "currency",
    "best_t",
    "thumbnail",
)

Key = tuple[str, int]  # (brand id, appearance index from 0)


def write_pages(report: ExposureReport, out_dir: Path, config: ReportConfig | None = None) -> list[Path]:
    """Thumbnails, report.csv and report.html (as `config` asks) in `out_dir`; the paths written.
    Thumbnails that cannot be grabbed (a source that cannot be read again) are left out, logged."""
    config = config or ReportConfig()
    written: list[Path] = []
    thumbs = write_thumbnails(report, out_dir, config) if config.html or config.csv else {}
    written.extend(out_dir / t for t in thumbs.values())
    if config.csv:
        written.append(write_csv(report, out_dir / "report.csv", thumbs))
    if config.html:
        path = out_dir / "report.html"
        path.write_text(render_html(report, thumbs, _cut_times(out_dir / "frames.jsonl")))
        written.append(path)
    return written


def _cut_times(frames_jsonl: Path) -> list[float]:
    """The times of the frames that start a shot, from the analysis' frame records."""
    if not frames_jsonl.is_file():
        return []
    return [r["t"] for r in read_records(frames_jsonl) if r.get("cut")]


def write_thumbnails(report: ExposureReport, out_dir: Path, config: ReportConfig) -> dict[Key, str]:
    """Each appearance's best frame with its box, as a JPEG under `out_dir/thumbs/` (the
    `max_thumbnails` of highest quality); their paths relative to `out_dir`, by appearance."""
    chosen = sorted(
        ((bid, k, a) for bid, b in report.brands.items() for k, a in enumerate(b.appearances) if a.best is not None),
        key=lambda x: -(x[2].quality or 0.0),
    )[: config.max_thumbnails]
    if not chosen:
        return {}
    try:
        frames = grab_frames(report.video, [a.best.t for _, _, a in chosen if a.best is not None])
    except Exception as e:  # a report without pictures is still a report
        log.warning("%s: no thumbnails (%s)", report.video, e)
        return {}
    colours = brand_colours(report.brands)
    folder = out_dir / "thumbs"
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[Key, str] = {}
    for bid, k, a in chosen:
        assert a.best is not None
        rgb = frames.get(a.best.t)
        if rgb is None:
            continue
        h, w = rgb.shape[:2]
        scale = min(1.0, config.thumbnail_width / w)
        box = None if a.best.box is None else [v * scale for v in a.best.box]
        small = draw_boxes(thumbnail(rgb, config.thumbnail_width), [(bid, box, "")], colours, 2)
        name = f"{_slug(bid)}-{k + 1:03d}.jpg"
        write_jpeg(folder / name, small, config.jpeg_quality)
        out[(bid, k)] = f"thumbs/{name}"
    return out


def write_csv(report: ExposureReport, path: Path, thumbs: Mapping[Key, str] | None = None) -> Path:
    thumbs = thumbs or {}
    rows = []
    for bid, b in report.brands.items():
        for k, a in enumerate(b.appearances):
            rows.append(_row(report.video, bid, b, k, a, thumbs.get((bid, k), "")))
    rows.sort(key=lambda r: (r["start"], r["brand"]))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(rows)
    return path


def _row(video: str, bid: str, b: BrandExposure, k: int, a: Appearance, thumb: str) -> dict[str, object]:
    def num(v: float | None, digits: int) -> str:
        return "" if v is None else f"{v:.{digits}f}"

    return {
        "video": video,
        "brand": bid,
        "name": b.name,
        "appearance": k + 1,
        "start": a.start,
        "end": a.end,
        "seconds": f"{a.end - a.start:.3f}",
        "max_score": num(a.max_score, 4),
        "mean_share": num(a.mean_share, 5),
        "position": a.position or "",
        "size": num(a.size, 4),
        "sharpness": num(a.sharpness, 4),
        "clarity": num(a.clarity, 4),
        "solus_s": f"{a.solus_s:.3f}",
        "quality": num(a.quality, 4),
        "quality_s": f"{a.quality_s:.3f}",
        "media_value": num(a.media_value, 2),
        "currency": b.rate.currency if b.rate is not None else "",
        "best_t": "" if a.best is None else f"{a.best.t:.3f}",
        "thumbnail": thumb,
    }


# -- the page ---------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}
header{background:#1d2330;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:20px;word-break:break-all}
header p{margin:2px 0;color:#c9cfdb}header .total{color:#fff;font-size:16px}
section{background:#fff;margin:18px 28px;padding:16px 20px;border-radius:8px;box-shadow:0 1px 3px #0002}
h2{font-size:16px;margin:0 0 12px}h3{font-size:14px;margin:16px 0 8px}
svg text{font:12px system-ui,sans-serif;fill:#1d2330}svg .tick{fill:#6b7385}
table{border-collapse:collapse;width:100%}th,td{padding:6px 8px;text-align:right;border-bottom:1px solid #e6e8ee}
th:first-child,td:first-child,th.bar{text-align:left}td.bar{width:32%}
.track{background:#e9ecf2;height:14px;border-radius:7px;position:relative;overflow:hidden}
.track span{position:absolute;left:0;top:0;bottom:0;border-radius:7px}.track .solus{filter:brightness(.6)}
.swatch{display:inline-block;width:11px;height:11px;border-radius:3px;margin-right:6px;vertical-align:-1px}
.grid{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;width:240px;background:#f5f6f8;border-radius:6px;overflow:hidden}
figure img{display:block;width:100%;height:auto}figure .none{height:135px;display:flex;align-items:center;
justify-content:center;color:#6b7385}figcaption{padding:6px 8px;font-size:12px}
footer{margin:18px 28px 28px;color:#6b7385;font-size:12px}
"""

_LABEL_W, _PLOT_W, _ROW_H, _TOP = 170, 810, 26, 26


def render_html(report: ExposureReport, thumbs: Mapping[Key, str] | None = None, cuts: Sequence[float] = ()) -> str:
    """The page, as one string; `cuts`: the times of the shot cuts, drawn on the timeline."""
    thumbs = thumbs or {}
    colours = {b: css_colour(c) for b, c in brand_colours(report.brands).items()}
    name = Path(report.video).name or report.video
    parts = [
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>media-ray: {_e(name)}</title><style>{_CSS}</style></head><body>",
        _header(report, name),
        '<section id="timeline-section"><h2>Timeline</h2>',
        _timeline(report, colours, cuts) if report.brands else "<p>No brands found.</p>",
        "</section>",
        '<section id="exposure"><h2>Exposure</h2>',
        _exposure_table(report, colours) if report.brands else "<p>No brands found.</p>",
        "</section>",
        '<section id="appearances"><h2>Appearances</h2>',
        _gallery(report, colours, thumbs),
        "</section>",
        "<footer>Quality index: the time-weighted mean, over each appearance's analysed frames, of "
        "size, sharpness, position (centre, edge or corner cell of the frame's thirds) and solus "
        "(1 / brands on screen), weighted as the configuration says (<code>exposure.quality</code>). "
        "Media value: seconds &times; quality &times; price per 30 s (<code>exposure.rate_card</code>) / 30. "
        "Made by media-ray.</footer>",
        "</body></html>\n",
    ]
    return "\n".join(parts)


def _header(report: ExposureReport, name: str) -> str:
    duration = "" if report.duration_s is None else f"{report.duration_s:.1f} s · "
    meta = (
        f"{duration}{report.frames_analysed} frames analysed at {report.fps_analysed:g} frames/s · "
        f"{report.cuts} cut{'s' if report.cuts != 1 else ''} · {len(report.brands)} brand"
        f"{'s' if len(report.brands) != 1 else ''}"
    )
    totals: dict[str, float] = {}
    for b in report.brands.values():
        if b.media_value is not None and b.rate is not None:
            totals[b.rate.currency] = totals.get(b.rate.currency, 0.0) + b.media_value
    total = " + ".join(_money(v, c) for c, v in totals.items())
    return (
        f'<header><h1>{_e(name)}</h1><p class="meta">{_e(meta)}</p>'
        + (f'<p class="total">Media value: {_e(total)}</p>' if total else "")
        + "</header>"
    )


def _span(report: ExposureReport) -> float:
    ends = [a.end for b in report.brands.values() for a in b.appearances]
    return max([report.duration_s or 0.0, *ends, 1e-6])


def _timeline(report: ExposureReport, colours: Mapping[str, str], cuts: Sequence[float]) -> str:
    span = _span(report)
    height = _TOP + _ROW_H * len(report.brands) + 6

    def x(t: float) -> float:
        return _LABEL_W + _PLOT_W * t / span

    out = [
        f'<svg id="timeline" viewBox="0 0 {_LABEL_W + _PLOT_W + 20} {height}" width="100%" '
        f'role="img" aria-label="timeline of the brands on screen">'
    ]
    step = next((s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600) if span / s <= 10), 7200)
    t = 0.0
    while t <= span + 1e-9:
        out.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="16" y2="{height}" stroke="#e6e8ee"/>')
        out.append(f'<text class="tick" x="{x(t):.1f}" y="12" text-anchor="middle">{_clock(t)}</text>')
        t += step
    for row, (bid, b) in enumerate(report.brands.items()):
        y = _TOP + row * _ROW_H
        out.append(f'<text x="4" y="{y + 15}">{_e(_short(b.name, 22))}</text>')
        out.append(f'<rect x="{_LABEL_W}" y="{y + 3}" width="{_PLOT_W}" height="16" fill="#f0f2f6"/>')
        for k, a in enumerate(b.appearances):
            tip = f"{b.name}: {a.start:.1f}-{a.end:.1f} s, quality {_q(a.quality)}"
            out.append(
                f'<rect class="appearance" data-brand="{_e(bid)}" data-k="{k + 1}" x="{x(a.start):.1f}" '
                f'y="{y + 3}" width="{max(1.5, x(a.end) - x(a.start)):.1f}" height="16" rx="2" '
                f'fill="{colours[bid]}" stroke="#0004"><title>{_e(tip)}</title></rect>'
            )
    for cut in cuts:
        out.append(
            f'<line class="cut" x1="{x(cut):.1f}" x2="{x(cut):.1f}" y1="16" y2="{height}" stroke="#1d2330" '
            'stroke-dasharray="3 3"><title>cut</title></line>'
        )
    out.append("</svg>")
    return "".join(out)


def _exposure_table(report: ExposureReport, colours: Mapping[str, str]) -> str:
    span = _span(report)
    head = (
        "<table><tr><th>Brand</th><th>On screen</th><th class='bar'>Share of the video (solus darker)</th>"
        "<th>Solus</th>"
        "<th>Appearances</th><th>Largest share</th><th>Quality</th><th>Media value</th></tr>"
    )
    rows = [head]
    for bid, b in sorted(report.brands.items(), key=lambda kv: -kv[1].exposure_s):
        c = colours[bid]
        on = 100 * b.exposure_s / span
        solus = 100 * b.solus_s / span
        value = "-" if b.media_value is None or b.rate is None else _money(b.media_value, b.rate.currency)
        share = "-" if b.max_share is None else f"{100 * b.max_share:.1f}%"
        rows.append(
            f'<tr class="brand" data-brand="{_e(bid)}"><td><span class="swatch" style="background:{c}"></span>'
            f"{_e(b.name)}</td><td>{b.exposure_s:.1f} s</td>"
            f'<td class="bar"><div class="track"><span class="on" style="width:{on:.2f}%;background:{c}"></span>'
            f'<span class="solus" style="width:{solus:.2f}%;background:{c}"></span></div></td>'
            f"<td>{b.solus_s:.1f} s</td><td>{len(b.appearances)}</td><td>{share}</td>"
            f"<td>{_q(b.quality)}</td><td>{_e(value)}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _gallery(report: ExposureReport, colours: Mapping[str, str], thumbs: Mapping[Key, str]) -> str:
    if not report.brands:
        return "<p>No appearances.</p>"
    out = []
    for bid, b in report.brands.items():
        out.append(
            f'<h3><span class="swatch" style="background:{colours[bid]}"></span>{_e(b.name)}</h3><div class="grid">'
        )
        for k, a in enumerate(b.appearances):
            src = thumbs.get((bid, k))
            alt = f"{b.name} at {a.best.t:.1f} s" if a.best is not None else b.name
            picture = (
                f'<img class="thumb" src="{_e(quote(src))}" alt="{_e(alt)}" loading="eager">'
                if src
                else '<div class="none">no picture</div>'
            )
            value = "" if a.media_value is None or b.rate is None else f" · {_money(a.media_value, b.rate.currency)}"
            caption = (
                f"{a.start:.1f}-{a.end:.1f} s · {a.position or 'no box'} · quality {_q(a.quality)} · "
                f"solus {a.solus_s:.1f} s{value}" + ("" if a.best is None else f" · best frame {a.best.t:.1f} s")
            )
            out.append(
                f'<figure class="appearance" data-brand="{_e(bid)}" data-k="{k + 1}">{picture}'
                f"<figcaption>{_e(caption)}</figcaption></figure>"
            )
        out.append("</div>")
    return "".join(out)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _q(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _money(v: float, currency: str) -> str:
    return f"{currency} {v:,.2f}"


def _clock(t: float) -> str:
    m, s = divmod(int(round(t)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:64] or "brand"


def write_annotated(report: ExposureReport, out_dir: Path, path: Path, config: ReportConfig | None = None):
    """The video of `report`, every frame, with the boxes of `out_dir/frames.jsonl` drawn in the
    page's colours and captioned with the brands' names, to `path`: (path, encoder, frames)."""
    config = config or ReportConfig()
    records = read_records(out_dir / "frames.jsonl")
    labels = sorted({d["label"] for r in records for d in r["detections"]} - set(report.brands))
    colours = brand_colours([*report.brands, *labels])
    names = {bid: b.name for bid, b in report.brands.items()}
    return annotate_video(report.video, records, path, colours, names, config.annotate)
