"""The naive baseline media-ray is measured against: one process, OpenCV SIFT + RANSAC of every
reference image against every sampled frame at full resolution, as a user would first write it.

    python bench/naive_sift.py VIDEO LOGOS [--fps 5] [--out found.jsonl]

Prints the frames analysed, the logos found and the wall time (decoding included, start-up of
this process excluded: the interpreter and OpenCV import in well under a second).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
RATIO = 0.75  # Lowe's ratio test
MIN_INLIERS = 12


def load_references(folder: Path, sift) -> dict[str, tuple[list, np.ndarray, tuple[int, int]]]:
    """Each BRAND.png (or each image of a BRAND/ folder): its keypoints, descriptors and size."""
    refs = {}
    paths = [p for p in sorted(folder.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
    for p in paths:
        image = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if image is None:
            continue
        if image.ndim == 3 and image.shape[2] == 4:  # transparent logos on white
            alpha = image[:, :, 3:4].astype(np.float32) / 255
            image = (image[:, :, :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        kp, des = sift.detectAndCompute(gray, None)
        if des is not None and len(kp) >= MIN_INLIERS:
            brand = p.parent.name if p.parent != folder else p.stem
            refs[f"{brand}/{p.name}"] = (kp, des, gray.shape[:2])
    return refs


def find(frame_gray, refs, sift, matcher) -> list[dict]:
    kp, des = sift.detectAndCompute(frame_gray, None)
    if des is None or len(kp) < MIN_INLIERS:
        return []
    found = []
    for key, (rkp, rdes, (h, w)) in refs.items():
        pairs = matcher.knnMatch(rdes, des, k=2)
        good = [m for m, *n in pairs if n and m.distance < RATIO * n[0].distance]
        if len(good) < MIN_INLIERS:
            continue
        src = np.float32([rkp[m.queryIdx].pt for m in good]).reshape(-1, 1, 2)
        dst = np.float32([kp[m.trainIdx].pt for m in good]).reshape(-1, 1, 2)
        H, mask = cv2.findHomography(src, dst, cv2.RANSAC, 5.0)
        if H is None or int(mask.sum()) < MIN_INLIERS:
            continue
        corners = cv2.perspectiveTransform(np.float32([[0, 0], [w, 0], [w, h], [0, h]]).reshape(-1, 1, 2), H)
        x0, y0 = corners.min(axis=(0, 1))
        x1, y1 = corners.max(axis=(0, 1))
        box = [float(x0), float(y0), float(x1), float(y1)]
        found.append({"label": key.split("/")[0], "inliers": int(mask.sum()), "box": box})
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video")
    ap.add_argument("logos")
    ap.add_argument("--fps", type=float, default=5)
    ap.add_argument("--out", help="write a record a frame (JSON lines)")
    args = ap.parse_args()
    started = time.perf_counter()
    sift = cv2.SIFT_create()
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    refs = load_references(Path(args.logos), sift)
    cap = cv2.VideoCapture(args.video)
    if not cap.isOpened():
        sys.exit(f"{args.video}: cannot open")
    src_fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames = hits = index = 0
    next_t = 0.0
    out = open(args.out, "w") if args.out else None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        t = index / src_fps
        index += 1
        if t + 1e-6 < next_t:
            continue
        next_t += 1 / args.fps
        found = find(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), refs, sift, matcher)
        frames += 1
        hits += len(found)
        if out:
            out.write(json.dumps({"t": round(t, 3), "detections": found}) + "\n")
    if out:
        out.close()
    wall = time.perf_counter() - started
    print(
        f"naive SIFT loop: {frames} frames, {len(refs)} references, {hits} logos found "
        f"in {wall:.1f} s ({frames / wall:.2f} frames/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
