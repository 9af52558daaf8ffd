"""gs:// sources and output folders against a local Cloud Storage emulator (127.0.0.1)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import numpy as np
import pytest
from cli_support import assert_one_line_error, media_ray
from gcs_emulator import gcs, objects  # noqa: F401 (the fixture)

from media_ray.cloud_storage import OutputFolder, store_for
from media_ray.sources import SourceError, decode, probe


@pytest.fixture(scope="module")
def bucket(gcs, sample):  # noqa: F811
    b = gcs.create_bucket(f"clips-{uuid.uuid4().hex[:8]}")
    b.blob("in/sample.mp4").upload_from_filename(str(sample["clip"]))
    return b


def test_an_object_is_probed_and_decoded_as_the_same_local_file_is(bucket, sample):
    uri = f"gs://{bucket.name}/in/sample.mp4"
    local, remote = probe(str(sample["clip"])), probe(uri)
    assert remote.uri == uri and remote.name == "sample"
    assert (remote.width, remote.height, remote.fps, remote.duration_s) == (
        local.width,
        local.height,
        local.fps,
        local.duration_s,
    )
    mine, theirs = list(decode(str(sample["clip"]), 2)), list(decode(uri, 2))
    assert len(theirs) == len(mine) > 0
    assert all(a.t == b.t and a.index == b.index and np.array_equal(a.rgb, b.rgb) for a, b in zip(mine, theirs))


def test_a_missing_object_or_bucket_is_one_line_and_status_2(bucket, sample, tmp_path):
    missing = f"gs://{bucket.name}/in/absent.mp4"
    assert_one_line_error(
        media_ray("analyze", missing, "--brands", sample["logos"], "--out", tmp_path / "o"), missing, "no such object"
    )
    nowhere = "gs://no-such-bucket-of-media-ray/in/a.mp4"
    assert_one_line_error(
        media_ray("analyze", nowhere, "--brands", sample["logos"], "--out", tmp_path / "o"), "no such bucket"
    )
    out = "gs://no-such-bucket-of-media-ray/out/"
    proc = media_ray("analyze", sample["clip"], "--brands", sample["logos"], "--out", out)
    assert_one_line_error(proc, out, "no such bucket")
    with pytest.raises(SourceError, match="names a folder"):
        probe(f"gs://{bucket.name}/in/")


def test_without_credentials_a_gs_uri_is_one_line_and_status_2(sample, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "STORAGE_EMULATOR", "RAY_AUTH"))}
    # no Application Default Credentials anywhere, and no look for a GCE metadata server
    env.update(HOME=str(tmp_path), CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), NO_GCE_CHECK="True")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "media_ray.app.cli",
            "analyze",
            "gs://some-bucket/clip.mp4",
            "--brands",
            str(sample["logos"]),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert_one_line_error(proc, "gs://some-bucket/clip.mp4", "no Google Cloud credentials")


def test_an_output_folder_uploads_under_its_prefix_what_is_new_or_changed(gcs, bucket):  # noqa: F811
    prefix = f"gs://{bucket.name}/results/run1/"
    with OutputFolder(prefix) as folder:
        assert folder.remote and folder.path.is_dir()
        (folder.path / "a").mkdir()
        (folder.path / "a" / "frames.jsonl").write_text('{"t": 0}\n')
        (folder.path / "a" / "report.json").write_text("{}\n")
        assert sorted(folder.upload("a")) == [prefix + "a/frames.jsonl", prefix + "a/report.json"]
        assert folder.upload("a") == []  # unchanged: not sent again
        (folder.path / "a" / "report.json").write_text('{"brands": {}}\n')
        assert folder.upload("a") == [prefix + "a/report.json"]
        (folder.path / "summary.csv").write_text("video\n")
        local = folder.path
    assert not local.exists()  # the temporary folder goes
    assert objects(gcs, bucket.name, "results/run1/") == {
        "results/run1/a/frames.jsonl": b'{"t": 0}\n',
        "results/run1/a/report.json": b'{"brands": {}}\n',
        "results/run1/summary.csv": b"video\n",
    }
    again = OutputFolder(prefix)
    fetched = again.fetch("a/report.json")
    assert fetched is not None and fetched.read_text() == '{"brands": {}}\n'
    assert again.fetch("absent.jsonl") is None
    again.close()


def test_a_prefix_lists_its_own_videos_not_those_of_its_subfolders(bucket):
    for name in ("drop/one.mp4", "drop/two.MOV", "drop/notes.txt", "drop/deeper/three.mp4"):
        bucket.blob(name).upload_from_string(b"x" * 10)
    listed = store_for(f"gs://{bucket.name}/drop").list(f"gs://{bucket.name}/drop")
    assert [o.uri for o in listed] == [f"gs://{bucket.name}/drop/one.mp4", f"gs://{bucket.name}/drop/two.MOV"]
    assert all(o.size == 10 and o.version for o in listed)
    assert store_for("/a/local/folder") is None


def test_a_watched_prefix_takes_an_object_once_settled_and_again_once_rewritten(bucket, tmp_path):
    from media_ray.watching import Ledger, WatchConfig, Watcher

    now = [0.0]
    ledger = Ledger(tmp_path / "ledger.jsonl")
    watch = Watcher(f"gs://{bucket.name}/landing/", ledger, WatchConfig(settle_s=5), lambda: now[0])
    bucket.blob("landing/rec.mp4").upload_from_string(b"v1")
    assert watch.poll() == []
    now[0] = 5.0
    taken = watch.poll()
    assert [(t.uri, t.size) for t in taken] == [(f"gs://{bucket.name}/landing/rec.mp4", 2)]
    ledger.record(taken[0], "done")
    now[0] = 20.0
    assert watch.poll() == []
    bucket.blob("landing/rec.mp4").upload_from_string(b"v2")  # a new generation
    assert watch.poll() == []
    now[0] = 30.0
    again = watch.poll()
    assert len(again) == 1 and again[0].version != taken[0].version


def test_hls_playback_is_copied_to_the_bucket_segments_before_the_playlist_that_lists_them(gcs, bucket, tmp_path):  # noqa: F811
    from media_ray.hls import HlsWriter
    from media_ray.hls_mirror import HlsMirror

    def listed(playlist: bytes) -> list[str]:
        return [ln for ln in playlist.decode().splitlines() if ln and not ln.startswith("#")]

    folder, prefix = tmp_path / "stream1", f"gs://{bucket.name}/hls/stream1/"
    mirror = HlsMirror(folder, prefix)
    writer = HlsWriter(folder, segment_s=1.0, mirror=mirror)
    rgb = np.zeros((96, 128, 3), np.uint8)
    for i in range(75):  # 3 s at 25 frames/s
        rgb[:, :, 0] = (i * 3) % 256
        writer.write_frame(rgb, i / 25)
    mirror.sync()  # as the mirror's thread does at each new segment
    remote = objects(gcs, bucket.name, "hls/stream1/")
    assert listed(remote["hls/stream1/index.m3u8"])
    assert all(f"hls/stream1/{name}" in remote for name in listed(remote["hls/stream1/index.m3u8"]))
    writer.close()  # the mirror's last copy: the ended playlist
    remote = objects(gcs, bucket.name, "hls/stream1/")
    playlist = remote["hls/stream1/index.m3u8"]
    assert playlist == (folder / "index.m3u8").read_bytes() and playlist.decode().rstrip().endswith("#EXT-X-ENDLIST")
    assert len(listed(playlist)) >= 3 and mirror.failures == 0
    for name in listed(playlist):
        assert remote[f"hls/stream1/{name}"] == (folder / name).read_bytes()
    blob = bucket.get_blob("hls/stream1/index.m3u8")
    assert blob.content_type == "application/vnd.apple.mpegurl" and blob.cache_control == "no-cache"


def test_the_api_source_policy_refuses_gs_uris():
    from media_ray.source_policy import SourcePolicy, SourceRefused

    with pytest.raises(SourceRefused):
        SourcePolicy().check("gs://any-bucket/clip.mp4")  # no API user reads buckets with the server's credentials
