"""An RTSP camera for the tests: GStreamer's RTSP server looping a clip as a live H.264 stream.

Run by the system Python, which has GStreamer's bindings (Debian: `python3-gi` and
`gir1.2-gst-rtsp-server-1.0`, which brings the base, good and bad plugins):

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --clip clip.h264 [--fps 25] [--path /cam]

`--clip` is a raw H.264 byte stream without B-frames (`ffmpeg -i in.mp4 -c:v libx264 -profile:v
baseline -f h264 clip.h264`). It is decoded, looped for as long as a client watches and encoded
again, so the stream is live as a camera's is: no duration, no end, timestamps from 0 for each
new server. The server listens on 127.0.0.1 only, prints `ready URL` once it accepts clients,
and exits on SIGTERM or SIGINT, or by itself after `--max-s` seconds. `--check` says whether
this Python has everything the server needs (exit status 0), or what it lacks.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

#: decode the looped byte stream (the decoder gives each picture its time, by the frame rate), and
#: encode it again with a keyframe every second, as a camera sends
PIPELINE = (
    '( multifilesrc location="{clip}" loop=true caps=video/x-h264,stream-format=byte-stream,framerate={fps}/1'
    " ! h264parse ! openh264dec ! openh264enc gop-size={fps} ! rtph264pay name=pay0 pt=96 config-interval=1 )"
)


#: the GStreamer elements of PIPELINE (plugins base, good and bad)
ELEMENTS = ("multifilesrc", "h264parse", "openh264dec", "openh264enc", "rtph264pay")


def missing_elements() -> list[str]:
    return [name for name in ELEMENTS if Gst.ElementFactory.find(name) is None]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="only check that the server can run here")
    parser.add_argument("--port", type=int)
    parser.add_argument("--clip", help="a raw H.264 byte stream (baseline: no B-frames)")
    parser.add_argument("--fps", type=int, default=25, help="the clip's frame rate")
    parser.add_argument("--path", default="/cam", help="the stream's path in its rtsp:// URL")
    parser.add_argument("--max-s", type=float, default=300.0, help="exit after this many seconds")
    args = parser.parse_args()

    Gst.init(None)
    if args.check:
        missing = missing_elements()
        if missing:
            print(f"GStreamer elements missing: {', '.join(missing)}", file=sys.stderr)
        return 1 if missing else 0
    if args.port is None or args.clip is None:
        parser.error("--port and --clip are needed")
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE.format(clip=args.clip, fps=args.fps))
    factory.set_shared(True)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1

    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    GLib.timeout_add(int(args.max_s * 1000), loop.quit)
    print(f"ready rtsp://127.0.0.1:{args.port}{args.path}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
