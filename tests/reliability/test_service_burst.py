"""The HTTP service on a real socket (uvicorn, in a thread) under a bounded burst: 40 requests from 8 client
threads, valid images (RGB, 16-bit, CMYK, palette, EXIF-rotated, JPEG and PNG) mixed with hostile input (not an
image, truncated, declared and JPEG decompression bombs, oversized with and without Content-Length, malformed
boxes, unknown task, empty file, missing field, not multipart, deeply nested JSON).

Checked: no 5xx but the deliberate 503 (+ Retry-After, then retried), each hostile request gets its documented
4xx, every valid request gets this image's own answer (the Python API's, bit for bit, in fp32 and in bf16), the
server thread is alive and its admission gate empty afterwards, and the process's resident memory stays bounded
(sampled every 10 ms during the burst).
"""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from tests.conftest import PRECISIONS, as_served

N_REQUESTS, N_THREADS = 40, 8
MAX_UPLOAD = 1_000_000
RSS_BOUND_MB = 400  # generous: one decoded bomb would need gigabytes


pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.precision]  # the server runs in fp32 and in bf16


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _noise(w: int, h: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _bomb_png() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


def _bomb_jpeg() -> bytes:
    data = bytearray(_encode(_noise(16, 16, 0), "JPEG"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60_000, 60_000)
    return bytes(data)


def _exif_rotated(seed: int) -> bytes:
    image = _noise(60, 30, seed)
    exif = image.getexif()
    exif[0x0112] = 8
    return _encode(image, "JPEG", exif=exif.tobytes())


def _valid_images() -> list[tuple[str, bytes]]:
    palette = _noise(40, 40, 5).convert("P")
    return [
        ("rgb.png", _encode(_noise(64, 48, 1), "PNG")),
        ("rgb.jpg", _encode(_noise(80, 60, 2), "JPEG")),
        ("grey16.png", _encode(Image.fromarray(np.arange(50 * 40, dtype=np.uint16).reshape(40, 50) * 30), "PNG")),
        ("cmyk.jpg", _encode(_noise(48, 48, 3).convert("CMYK"), "JPEG")),
        ("palette.png", _encode(palette, "PNG", transparency=0)),
        ("exif.jpg", _exif_rotated(4)),
        ("big.jpg", _encode(_noise(640, 480, 6), "JPEG", quality=80)),
        ("rgba.png", _encode(_noise(32, 32, 7).convert("RGBA"), "PNG")),
    ]


VALID_BOXES = [
    None,
    [{"xyxy": [0.1, 0.1, 0.6, 0.7], "kind": k, "normalized": True} for k in ("face", "head")],
    [
        {"xyxy": [0.05, 0.1, 0.45, 0.9], "kind": "person"},
        {"xyxy": [0.5, 0.1, 0.95, 0.9], "kind": "person"},
        {"xyxy": [0.1, 0.1, 0.3, 0.4], "kind": "face"},
        {"xyxy": [0.6, 0.5, 0.7, 0.6], "kind": "hand"},
    ],
]
VALID_TASKS = ["lam,gaze", "all", "expression,gesture,relation"]

HOSTILE = {  # kind: (request builder, expected status)
    "not an image": (lambda: {"files": {"image": ("a.png", b"hello, not an image\n" * 20, "image/png")}}, 415),
    "truncated image": (
        lambda: {"files": {"image": ("t.png", _encode(_noise(128, 128, 9), "PNG")[:20000], "image/png")}},
        422,
    ),
    "png bomb": (lambda: {"files": {"image": ("bomb.png", _bomb_png(), "image/png")}}, 413),
    "jpeg bomb": (lambda: {"files": {"image": ("bomb.jpg", _bomb_jpeg(), "image/jpeg")}}, 413),
    "oversized": (
        lambda: {"files": {"image": ("big.png", b"\x89PNG" + b"\0" * (MAX_UPLOAD + 200_000), "image/png")}},
        413,
    ),
    "oversized, no length": (
        lambda: {
            "content": iter([b"--b\r\n"] + [b"x" * 65536] * 24),
            "headers": {"content-type": "multipart/form-data; boundary=b"},
        },
        413,
    ),
    "malformed boxes": (
        lambda: {"files": {"image": ("a.png", _encode(_noise(32, 32, 1), "PNG"))}, "data": {"boxes": "[{'xyxy': [1,2"}},
        400,
    ),
    "NaN box": (
        lambda: {
            "files": {"image": ("a.png", _encode(_noise(32, 32, 1), "PNG"))},
            "data": {"boxes": '[{"xyxy": [1, NaN, 3, 4]}]'},
        },
        422,
    ),
    "box of 3 numbers": (
        lambda: {
            "files": {"image": ("a.png", _encode(_noise(32, 32, 1), "PNG"))},
            "data": {"boxes": '[{"xyxy": [1, 2, 3]}]'},
        },
        422,
    ),
    "box outside": (
        lambda: {
            "files": {"image": ("a.png", _encode(_noise(32, 32, 1), "PNG"))},
            "data": {"boxes": '[{"xyxy": [1, 2, 3000, 4]}]'},
        },
        422,
    ),
    "unknown task": (
        lambda: {"files": {"image": ("a.png", _encode(_noise(32, 32, 1), "PNG"))}, "data": {"tasks": "lam,telepathy"}},
        422,
    ),
    "empty file": (lambda: {"files": {"image": ("e.png", b"", "image/png")}}, 422),
    "missing image": (lambda: {"data": {"tasks": "lam"}, "files": {"other": ("x", b"1")}}, 422),
    "not multipart": (lambda: {"json": {"image": "aGVsbG8="}}, 415),
    "deeply nested boxes": (
        lambda: {
            "files": {"image": ("a.png", _encode(_noise(32, 32, 1), "PNG"))},
            "data": {"boxes": "[" * 50_000 + "]" * 50_000},
        },
        400,
    ),
    "boxes not a list": (
        lambda: {"files": {"image": ("a.png", _encode(_noise(32, 32, 1), "PNG"))}, "data": {"boxes": '"abc"'}},
        422,
    ),
}


@pytest.fixture(scope="module", params=PRECISIONS)
def server(request):
    """The service on a real socket, computing in fp32 or in bf16 (emulated where the CPU has no native bf16)."""
    import uvicorn

    from socialfusion.api import SocialFusion
    from socialfusion.serve.http import create_app

    predictor = SocialFusion.from_pretrained("tiny", device="cpu", precision=request.param)
    app = create_app(predictor, max_upload_bytes=MAX_UPLOAD, max_concurrency=2, max_queue=4)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="critical", lifespan="off", limit_concurrency=64))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.02)
    assert srv.started
    yield f"http://127.0.0.1:{port}", predictor, app, thread
    srv.should_exit = True
    thread.join(10)
    sock.close()


def test_burst_of_valid_and_hostile_requests_on_a_real_socket(server, capsys):
    import httpx
    import psutil

    url, predictor, app, thread = server
    images = _valid_images()
    jobs = []
    hostile_kinds = list(HOSTILE)
    for i in range(N_REQUESTS):
        if i % 2 == 0:
            name, data = images[(i // 2) % len(images)]
            jobs.append(("valid", i, (name, data, VALID_BOXES[i % 3], VALID_TASKS[(i // 3) % 3])))
        else:
            jobs.append((hostile_kinds[(i // 2) % len(hostile_kinds)], i, None))
    expected = {}
    for kind, i, spec in jobs:  # the same inputs through the Python API, one at a time
        if kind == "valid":
            name, data, boxes, tasks = spec
            [expected[i]] = predictor.predict(data, boxes=boxes, tasks=tasks)

    proc = psutil.Process()
    base_rss = proc.memory_info().rss
    peak = [base_rss]
    stop = threading.Event()

    def monitor():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.01)

    attempts: list[int] = []
    lock = threading.Lock()
    local = threading.local()

    def send(kind, spec):
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=url, timeout=60)
        if kind == "valid":
            name, data, boxes, tasks = spec
            form = {"tasks": tasks} | ({"boxes": json.dumps(boxes)} if boxes is not None else {})
            return client.post("/predict", files={"image": (name, data)}, data=form)
        kw = HOSTILE[kind][0]()
        return client.post("/predict", **kw)

    def one(job):
        kind, i, spec = job
        for _ in range(400):
            try:
                r = send(kind, spec)
            except httpx.TransportError as err:  # the server may close an oversized upload early
                if kind.startswith("oversized"):
                    with lock:
                        attempts.append(413)
                    return kind, i, None, str(err)
                raise
            with lock:
                attempts.append(r.status_code)
            if r.status_code != 503:
                return kind, i, r.status_code, r.json()
            assert r.headers.get("retry-after") == "1"
            time.sleep(0.05)
        raise AssertionError(f"request {i} never admitted")

    watcher = threading.Thread(target=monitor, daemon=True)
    watcher.start()
    t0 = time.perf_counter()
    try:
        with ThreadPoolExecutor(N_THREADS) as pool:
            outcomes = list(pool.map(one, jobs))
    finally:
        stop.set()
        watcher.join()
    elapsed = time.perf_counter() - t0
    grown_mb = (peak[0] - base_rss) / 2**20

    assert thread.is_alive(), "the server thread died"
    health = httpx.get(f"{url}/health", timeout=10)
    assert health.status_code == 200 and health.json()["inside"] == 0
    server_errors = [s for s in attempts if s >= 500 and s != 503]
    assert not server_errors, attempts
    for kind, i, status, body in outcomes:
        if kind == "valid":
            assert status == 200, (i, body)
            # the batching promise (docs/USAGE.md): the answer alone, bit for bit, as the service rounds it
            assert (body["width"], body["height"]) == (expected[i]["width"], expected[i]["height"])
            assert body["tasks"] == as_served(expected[i]), i
        elif status is not None:
            assert status == HOSTILE[kind][1], (kind, status, body)
            assert isinstance(body.get("detail"), str) and body["detail"]
    assert grown_mb < RSS_BOUND_MB, f"resident memory grew by {grown_mb:.0f} MB during the burst"
    counts = {s: attempts.count(s) for s in sorted(set(attempts))}
    with capsys.disabled():
        print(
            f"\nservice burst: {len(jobs)} requests from {N_THREADS} threads, {len(attempts)} attempts with 503 "
            f"retries, statuses {counts}, {elapsed:.1f} s, peak RSS growth {grown_mb:.0f} MB"
        )
