#!/usr/bin/env python3
"""An RTSP server for the video tests: GStreamer's (gst-rtsp-server, from Debian), not ours.

Serves an H.264 Matroska file at rtsp://127.0.0.1:PORT/clip as an IP camera would, in real time
from its first frame for each client. Writes READY_FILE once it listens, and exits after SESSIONS
clients have played and left, or after LIFETIME seconds whatever happens, so a test cannot hang.

  rtsp_server.py VIDEO.mkv PORT READY_FILE [--sessions N] [--lifetime S]
"""
import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("video")
    parser.add_argument("port")
    parser.add_argument("ready_file")
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--lifetime", type=float, default=60)
    args = parser.parse_args()

    Gst.init(None)
    loop = GLib.MainLoop()
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(args.port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f'( filesrc location="{args.video}" ! matroskademux ! h264parse ! '
                       "rtph264pay name=pay0 pt=96 config-interval=1 )")
    factory.set_shared(False)  # each client sees the file from its first frame
    server.get_mount_points().add_factory("/clip", factory)

    left = {"sessions": args.sessions}

    def on_client(_server, client):
        played = {"yes": False}

        def on_play(*_):
            played["yes"] = True

        def on_closed(*_):
            if played["yes"]:
                left["sessions"] -= 1
                if left["sessions"] <= 0:
                    loop.quit()

        client.connect("play-request", on_play)
        client.connect("closed", on_closed)

    server.connect("client-connected", on_client)
    if server.attach(None) == 0:
        sys.exit(f"rtsp_server.py: cannot listen on port {args.port}")
    GLib.timeout_add(int(args.lifetime * 1000), loop.quit)
    with open(args.ready_file, "w") as ready:
        ready.write("ready\n")
    loop.run()


if __name__ == "__main__":
    main()
