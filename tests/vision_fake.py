"""A local fake of Google Cloud Vision's REST endpoint (`POST /v1/images:annotate`) on 127.0.0.1.

It answers the way Vision does, from the images it is sent: it finds the test's mark (a block of
one colour) in each image and names it as the test says, so what it answers depends only on
what the detector sent."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

MARK_RGB = (230, 30, 40)
MARK_BOX = (400, 200, 560, 300)  # where the mark is in the 1280x720 source frames


class FakeVision:
    """Answers each image with the mark's box (in the image's pixels) under `names`: the test's
    own descriptions, one logo annotation each."""

    def __init__(self, names: list[tuple[str, float]]):
        self.names = names
        self.calls: list[dict] = []
        self.images: list[np.ndarray] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                ok = self.path.split("?")[0] == "/v1/images:annotate"
                answer = fake.answer(body) if ok else {"error": {"code": 404, "message": "no such method"}}
                data = json.dumps(answer).encode()
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, body: dict) -> dict:
        self.calls.append(body)
        responses = []
        for request in body["requests"]:
            image = cv2.imdecode(np.frombuffer(base64.b64decode(request["image"]["content"]), np.uint8), 1)
            self.images.append(image)
            ys, xs = np.nonzero(np.all(np.abs(image.astype(int) - MARK_RGB[::-1]) < 40, axis=2))
            if not len(xs):
                responses.append({})
                continue
            x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
            # Vision leaves out coordinates that are 0; the polygon goes round the mark
            vertices = [{"x": x0, "y": y0}, {"x": x1, "y": y0}, {"x": x1, "y": y1}, {"x": x0, "y": y1}]
            responses.append(
                {
                    "logoAnnotations": [
                        {"description": name, "score": score, "boundingPoly": {"vertices": vertices}}
                        for name, score in self.names
                    ]
                }
            )
        return {"responses": responses}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
