"""The HTTP service on the tiny preset: endpoints, every kind of bad input (a clear 4xx, the service lives on),
backpressure (503 + Retry-After), and a concurrent burst mixing valid and hostile requests."""

import io
import json
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from socialfusion.api import SocialFusion
from socialfusion.numerics import tolerance
from socialfusion.serve.http import create_app
from tests.conftest import as_served, in_precision

MAX_UPLOAD = 300_000


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model gains nothing from intra-op threads; they spin on a busy machine
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def predictor():
    return SocialFusion.from_pretrained("tiny", device="cpu")


@pytest.fixture(scope="module")
def client(predictor):
    app = create_app(predictor, max_upload_bytes=MAX_UPLOAD, max_concurrency=2, max_queue=16)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture()
def served(predictor, precision):
    """(predictor, client) of the same model computing in `precision`: answers are compared within a precision,
    never across precisions."""
    p = in_precision(predictor, precision)
    with TestClient(
        create_app(p, max_upload_bytes=MAX_UPLOAD, max_concurrency=2, max_queue=16), raise_server_exceptions=False
    ) as c:
        yield p, c


def png_bytes(w=64, h=48, seed=0, fmt="PNG") -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def bomb_png(w=100_000, h=100_000) -> bytes:
    """A tiny PNG whose header claims 10^10 pixels: refused before any pixel is decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def post(client, image=None, boxes=None, tasks="lam,gaze", filename="img.png"):
    files = {} if image is None else {"image": (filename, image, "image/png")}
    data = {}
    if boxes is not None:
        data["boxes"] = boxes if isinstance(boxes, str) else json.dumps(boxes)
    if tasks is not None:
        data["tasks"] = tasks
    return client.post("/predict", files=files or None, data=data)


def check_valid(resp, w=64, h=48):
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["width"], body["height"]) == (w, h)
    lam = body["tasks"]["lam"]
    assert lam["label"] in ("looking", "not_looking") and sum(lam["probs"].values()) == pytest.approx(1.0, abs=1e-6)
    gaze = body["tasks"]["gaze"]
    heat = np.array(gaze["heatmap"])
    assert (
        heat.shape == (64, 64) and np.all(np.round(heat, 4) == heat) and abs(heat.sum() - 1.0) <= 4096 * 0.00005
    )  # each cell rounded to 4 decimals
    assert 0 <= gaze["point"][0] <= w and 0 <= gaze["point"][1] <= h
    return body


def test_health_tasks_page_and_docs(client):
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert r.json()["warning"].startswith("UNTRAINED") and r.json()["model_card"] == r.json()["warning"]
    listing = client.get("/tasks").json()
    tasks = {t["name"]: t for t in listing["tasks"]}
    assert list(tasks) == ["lam", "expression", "gesture", "relation", "gaze"]
    assert tasks["relation"]["roles"] == [0, 1] and tasks["lam"]["roles"] == [0]
    assert {n: t["box_kinds"] for n, t in tasks.items()} == {
        "lam": ["face"],
        "expression": ["face"],
        "gesture": ["hand"],
        "relation": ["person", "person"],
        "gaze": ["head"],
    }
    assert listing["box_kinds"] == ["face", "hand", "head", "person"]
    assert len(tasks["gesture"]["classes"]) == 34 and len(tasks["expression"]["classes"]) == 8
    assert tasks["gaze"]["kind"] == "heatmap"
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for anchor in ('id="file"', 'id="canvas"', 'id="run"', 'id="results"', 'id="tasks"'):
        assert anchor in page.text
    assert "http://" not in page.text and "https://" not in page.text and "//cdn" not in page.text, (
        "no external resources"
    )
    docs = client.get("/docs")
    assert docs.status_code == 200 and "http://" not in docs.text and "https://" not in docs.text, "/docs works offline"
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"/static-offline-docs/{asset}" in docs.text
        assert client.get(f"/static-offline-docs/{asset}").status_code == 200
    assert "/predict" in client.get("/openapi.json").json()["paths"]
    card = client.get("/model_card").json()
    assert card["card"]["trained"] is False and card["summary"] == card["warning"]


def test_valid_prediction_with_pixel_and_normalised_boxes(served, precision):
    predictor, client = served
    assert client.get("/health").json()["precision"] == precision  # a client can tell which bound applies
    img = png_bytes()
    boxes = [
        {"xyxy": [8, 6, 40, 30], "kind": "face"},
        {"xyxy": [0.1, 0.1, 0.7, 0.7], "kind": "head", "normalized": True},
        {"xyxy": [0, 0, 32, 48], "kind": "person"},
        {"xyxy": [0.5, 0.0, 1.0, 1.0], "kind": "person", "normalized": True},
    ]
    body = check_valid(post(client, img, boxes, tasks="lam,relation,gaze"))
    assert body["boxes"][0]["xyxy_normalized"] == pytest.approx([0.125, 0.125, 0.625, 0.625])
    assert body["tasks"]["relation"]["label"] in predictor.model.tasks["relation"].classes
    assert body["warning"].startswith("UNTRAINED"), "an untrained preset's answers carry the warning"
    # the same request through the Python API: the same computation, so the same numbers, bit for bit
    [direct] = predictor.predict(Image.open(io.BytesIO(img)), boxes=boxes, tasks="lam,relation,gaze")
    assert body["tasks"] == as_served(direct)
    # no boxes: the whole image, and relation says it needs two
    body = post(client, img, None, tasks="all").json()
    assert body["boxes"][0]["source"] == "whole_image" and "skipped" in body["tasks"]["relation"]
    assert set(body["tasks"]) == {"lam", "expression", "gesture", "relation", "gaze"}


def _truncated_png():
    data = png_bytes(128, 128, seed=9)
    return data[: len(data) // 2]


def _bad_multipart(client):
    return client.post(
        "/predict",
        content=b'--xyz\r\nContent-Disposition: form-data; name="image"\r\n\r\nabc',
        headers={"content-type": "multipart/form-data; boundary=nope"},
    )


BAD_INPUTS = {
    "not an image": (
        lambda c: post(c, b"hello, I am a text file" * 10, filename="notes.png"),
        415,
        "not a readable image",
    ),
    "truncated image": (lambda c: post(c, _truncated_png()), 422, "cannot decode"),
    "decompression bomb": (lambda c: post(c, bomb_png()), 413, "decompression bomb"),
    "oversized upload": (lambda c: post(c, b"\x89PNG" + b"\0" * (MAX_UPLOAD + 300_000)), 413, "too large"),
    "oversized upload, streamed without length": (
        lambda c: c.post(
            "/predict",
            content=iter([b"--b\r\n"] + [b"x" * 65536] * 10),
            headers={"content-type": "multipart/form-data; boundary=b"},
        ),
        413,
        "too large",
    ),
    "empty image file": (lambda c: post(c, b""), 422, "empty"),
    "missing image": (lambda c: post(c, None, [{"xyxy": [0, 0, 1, 1]}]), 422, "missing the 'image'"),
    "image as a text field": (
        lambda c: c.post("/predict", data={"image": "abc"}, files={"x": ("x", b"1")}),
        422,
        "must be a file",
    ),
    "not multipart": (lambda c: c.post("/predict", json={"image": "abc"}), 415, "multipart/form-data"),
    "malformed multipart": (_bad_multipart, 400, "malformed form body"),
    "too many form fields": (
        lambda c: c.post("/predict", data={f"f{i}": "x" for i in range(50)}, files={"image": ("a.png", png_bytes())}),
        400,
        "malformed form body",
    ),
    "malformed boxes JSON": (lambda c: post(c, png_bytes(), "[{'xyxy': [1, 2, 3, 4]}"), 400, "not valid JSON"),
    "boxes not a list": (lambda c: post(c, png_bytes(), "42"), 422, "JSON list"),
    "box x2 < x1": (lambda c: post(c, png_bytes(), [{"xyxy": [30, 5, 10, 20], "role": 0}]), 422, "x1 <= x2"),
    "box out of the image (pixels)": (
        lambda c: post(c, png_bytes(), [{"xyxy": [10, 5, 400, 20]}]),
        422,
        "outside the image",
    ),
    "box out of range (normalised)": (
        lambda c: post(c, png_bytes(), [{"xyxy": [0.1, 0.1, 1.2, 0.5], "normalized": True}]),
        422,
        "outside the image",
    ),
    "box with 3 numbers": (lambda c: post(c, png_bytes(), [{"xyxy": [1, 2, 3]}]), 422, "4 numbers"),
    "box with a NaN": (lambda c: post(c, png_bytes(), '[{"xyxy": [1, NaN, 3, 4]}]'), 422, "finite"),
    "box with a bad role": (lambda c: post(c, png_bytes(), [{"xyxy": [1, 2, 3, 4], "role": -3}]), 422, "role"),
    "too many boxes": (lambda c: post(c, png_bytes(), [{"xyxy": [1, 2, 3, 4]}] * 100), 422, "at most"),
    "unknown task": (lambda c: post(c, png_bytes(), None, tasks="lam,smile"), 422, "unknown task 'smile'"),
    "unknown box kind": (
        lambda c: post(c, png_bytes(), [{"xyxy": [1, 2, 3, 4], "kind": "foot"}]),
        422,
        "'kind' must be one of",
    ),
    "untagged boxes for tasks of two kinds": (
        lambda c: post(c, png_bytes(), [{"xyxy": [1, 2, 30, 40]}], tasks="lam,gaze"),
        422,
        "give every box a kind",
    ),
    "empty task list": (lambda c: post(c, png_bytes(), None, tasks=" , "), 422, "no task"),
    "deeply nested boxes JSON": (lambda c: post(c, png_bytes(), "[" * 100_000 + "]" * 100_000), 400, "not valid JSON"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_gets_a_clear_4xx_and_the_service_lives_on(client, name):
    send, status, phrase = BAD_INPUTS[name]
    r = send(client)
    assert r.status_code == status, (name, r.status_code, r.text[:300])
    detail = r.json()["detail"]
    assert isinstance(detail, str) and phrase in detail, detail
    assert client.get("/health").status_code == 200
    assert client.get("/health").json()["inside"] == 0, "every request leaves the admission gate"


def test_wrong_method_and_path(client):
    assert client.get("/predict").status_code == 405
    assert client.get("/nope").status_code == 404


class _BlockingPredictor:
    """The real predictor, but predict() waits for a signal: requests pile up deterministically."""

    def __init__(self, inner):
        self.inner = inner
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict(self, *args, **kwargs):
        self.entered.release()
        assert self.release.wait(30)
        return self.inner.predict(*args, **kwargs)


def test_backpressure_answers_503_with_retry_after_and_recovers(predictor):
    slow = _BlockingPredictor(predictor)
    app = create_app(slow, max_upload_bytes=MAX_UPLOAD, max_concurrency=1, max_queue=1)
    with TestClient(app, raise_server_exceptions=False) as c, ThreadPoolExecutor(2) as pool:
        running = pool.submit(post, c, png_bytes(seed=1))
        assert slow.entered.acquire(timeout=30)  # one request computes (blocked)
        waiting = pool.submit(post, c, png_bytes(seed=2))
        deadline = time.time() + 30
        while app.state.gate.inside < 2 and time.time() < deadline:  # the second one waits its turn
            time.sleep(0.01)
        assert app.state.gate.inside == 2
        r = post(c, png_bytes(seed=3))
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "busy" in r.json()["detail"]
        assert c.get("/health").status_code == 200  # cheap endpoints still answer
        slow.release.set()
        check_valid(running.result(timeout=30))
        check_valid(waiting.result(timeout=30))
        check_valid(post(c, png_bytes(seed=3)))
        assert app.state.gate.inside == 0


def test_concurrent_burst_of_valid_and_hostile_requests(served, capsys):
    """The batching promise (docs/USAGE.md): a request's answer inside a burst of concurrent ones is the answer of
    the same image, boxes and tasks alone, bit for bit, in fp32 and in bf16 (requests never share a computation)."""
    predictor, _ = served
    app = create_app(predictor, max_upload_bytes=MAX_UPLOAD, max_concurrency=2, max_queue=4)
    hostile = [
        "not an image",
        "truncated image",
        "decompression bomb",
        "oversized upload",
        "malformed boxes JSON",
        "box x2 < x1",
        "unknown task",
        "missing image",
        "box out of the image (pixels)",
        "not multipart",
    ]
    jobs = []
    for i in range(24):
        if i % 2 == 0:
            jobs.append(("valid", i))
        else:
            jobs.append((hostile[(i // 2) % len(hostile)], i))
    boxes = [{"xyxy": [4, 4, 40, 40], "kind": "face"}, {"xyxy": [4, 4, 40, 40], "kind": "head"}]
    expected = {}
    for kind, i in jobs:
        if kind == "valid":
            [ref] = predictor.predict(Image.open(io.BytesIO(png_bytes(seed=i))), boxes=boxes, tasks="lam,gaze")
            expected[i] = as_served(ref)
    statuses: list[int] = []
    lock = threading.Lock()

    def one(job):
        kind, i = job
        for _attempt in range(200):
            if kind == "valid":
                r = post(c, png_bytes(seed=i), boxes, tasks="lam,gaze")
            else:
                r = BAD_INPUTS[kind][0](c)
            with lock:
                statuses.append(r.status_code)
            if r.status_code != 503:
                return kind, i, r
            assert r.headers["retry-after"] == "1"
            time.sleep(0.05)  # a real client waits Retry-After seconds; the test only needs a pause
        raise AssertionError("never admitted")

    t0 = time.perf_counter()
    with TestClient(app, raise_server_exceptions=False) as c, ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(one, jobs))
        assert c.get("/health").json()["inside"] == 0
    elapsed = time.perf_counter() - t0
    for kind, i, r in outcomes:
        if kind == "valid":
            body = check_valid(r)
            assert body["tasks"] == expected[i], "a concurrent answer must be this image's answer alone, exactly"
        else:
            assert r.status_code == BAD_INPUTS[kind][1], (kind, r.status_code, r.text[:200])
    assert not [s for s in statuses if s >= 500 and s != 503], statuses
    counts = {s: statuses.count(s) for s in sorted(set(statuses))}
    with capsys.disabled():
        print(
            f"\nburst: {len(jobs)} requests ({len(statuses)} attempts incl. "
            f"retries) in {elapsed:.2f}s, statuses {counts}"
        )


# ------------------------------------------------------------------------------------------- boxes by kind


def test_each_task_gets_its_own_kind_of_box(served, precision):
    predictor, client = served
    img = png_bytes(80, 60, seed=21)
    boxes = [
        {"xyxy": [8, 6, 30, 30], "kind": "face"},
        {"xyxy": [50, 30, 70, 55], "kind": "hand"},
        {"xyxy": [0, 0, 40, 60], "kind": "person"},
        {"xyxy": [40, 0, 80, 60], "kind": "person"},
        {"xyxy": [6, 4, 32, 32], "kind": "head"},
    ]
    r = post(client, img, boxes, tasks="all")
    assert r.status_code == 200, r.text
    used = {name: t["boxes"] for name, t in r.json()["tasks"].items()}
    assert used == {"lam": [0], "expression": [0], "gesture": [1], "relation": [2, 3], "gaze": [4]}
    # gesture read the hand box: the answer of the API on that box alone, within the precision's bound (the other
    # tasks shared this call)
    [alone] = predictor.predict(Image.open(io.BytesIO(img)), boxes=[{"xyxy": [50, 30, 70, 55]}], tasks="gesture")
    assert r.json()["tasks"]["gesture"]["probs"] == pytest.approx(
        alone["tasks"]["gesture"]["probs"], abs=tolerance(precision).probability
    )
    # a face box only: gesture is skipped with the reason, never run on the face
    r = post(client, img, [{"xyxy": [8, 6, 30, 30], "kind": "face"}], tasks="gesture,expression")
    assert r.status_code == 200, r.text
    assert r.json()["tasks"]["gesture"] == {"skipped": "no hand box"}
    assert r.json()["tasks"]["expression"]["boxes"] == [0]


def test_examples_come_with_a_box_of_every_kind(client):
    examples = client.get("/examples").json()["examples"]
    assert len(examples) >= 2
    for ex in examples:
        png = client.get(f"/examples/{ex['name']}.png")
        assert png.status_code == 200 and png.headers["content-type"] == "image/png" and len(png.content) < 100_000
        assert Image.open(io.BytesIO(png.content)).size == (ex["width"], ex["height"])
    full = next(ex for ex in examples if {b["kind"] for b in ex["boxes"]} == {"face", "hand", "head", "person"})
    r = post(client, client.get(f"/examples/{full['name']}.png").content, full["boxes"], tasks="all")
    assert r.status_code == 200 and not [n for n, t in r.json()["tasks"].items() if "skipped" in t], r.text
    assert client.get("/examples/nope.png").status_code == 404


# ------------------------------------------------------------------------------------------- access control


def test_an_api_key_guards_every_request_but_the_public_pages(predictor):
    app = create_app(predictor, max_upload_bytes=MAX_UPLOAD, api_key="s3cret-key")
    with TestClient(app, raise_server_exceptions=False) as c:
        for method, path in (
            ("get", "/health"),
            ("get", "/tasks"),
            ("get", "/model_card"),
            ("get", "/examples"),
            ("get", "/examples/two-people.png"),
            ("post", "/predict"),
        ):
            r = getattr(c, method)(path)
            assert r.status_code == 401 and "missing API key" in r.json()["detail"], (path, r.status_code)
            assert r.headers["www-authenticate"] == "Bearer"
            wrong = getattr(c, method)(path, headers={"X-API-Key": "guess"})
            assert wrong.status_code == 401 and "wrong API key" in wrong.json()["detail"]
        assert c.get("/health", headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
        assert c.get("/health", headers={"X-API-Key": "s3cret-key"}).status_code == 200
        assert c.get("/health", headers={"Authorization": "Basic s3cret-key"}).status_code == 401
        ok = c.post(
            "/predict",
            files={"image": ("a.png", png_bytes(), "image/png")},
            data={"tasks": "lam"},
            headers={"X-API-Key": "s3cret-key"},
        )
        assert ok.status_code == 200 and ok.json()["tasks"]["lam"]["label"] in ("looking", "not_looking")
        # what a browser opens by address stays open: the page shell, the docs and their assets, the schema
        for path in ("/", "/docs", "/static-offline-docs/swagger-ui.css", "/openapi.json"):
            assert c.get(path).status_code == 200, path
        schemes = c.get("/openapi.json").json()["components"]["securitySchemes"]
        assert (
            schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
            and schemes["bearer"]["scheme"] == "bearer"
        )


def test_serve_refuses_a_network_address_without_a_key(monkeypatch):
    import uvicorn

    from socialfusion.errors import UserError
    from socialfusion.serve.http import bind_refusal, main

    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert bind_refusal(host, None, insecure=False) is None, host
    assert "refusing to listen on 0.0.0.0" in bind_refusal("0.0.0.0", None, insecure=False)
    assert bind_refusal("0.0.0.0", "k", insecure=False) is None and bind_refusal("0.0.0.0", None, insecure=True) is None
    monkeypatch.delenv("SOCIALFUSION_API_KEY", raising=False)
    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append((app, kw)))
    with pytest.raises(UserError, match="refusing to listen on 0.0.0.0 without an API key"):
        main(["--ckpt", "tiny", "--host", "0.0.0.0"])
    assert not started, "refused before starting"
    # the key from the environment: the service starts, and asks for it
    monkeypatch.setenv("SOCIALFUSION_API_KEY", "from-env")
    assert main(["--ckpt", "tiny", "--host", "0.0.0.0", "--device", "cpu"]) == 0
    [(app, kw)] = started
    assert kw["host"] == "0.0.0.0"
    with TestClient(app) as c:
        assert c.get("/health").status_code == 401
        assert c.get("/health", headers={"Authorization": "Bearer from-env"}).status_code == 200
