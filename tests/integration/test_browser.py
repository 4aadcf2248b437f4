"""The web page in a real browser (Debian's Chromium through Playwright) against a live uvicorn server.

Skipped, with the reason, only when /usr/bin/chromium or the playwright package is missing
(install: `apt-get install -y chromium` and `pip install playwright`; never `playwright install`).
"""

import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is absent (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is absent (pip install playwright)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(app):
    import uvicorn

    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    return srv, thread, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def predictor():
    from socialfusion.api import SocialFusion

    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: intra-op threads only spin against the browser on 2 cores
    yield SocialFusion.from_pretrained("tiny", device="cpu")
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def server(predictor):
    from socialfusion.serve.http import create_app

    srv, thread, url = _serve(create_app(predictor))
    yield url
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def keyed_server(predictor):
    from socialfusion.serve.http import create_app

    srv, thread, url = _serve(create_app(predictor, api_key="page-key"))
    yield url
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def page(browser):
    return browser.new_page(viewport={"width": 1280, "height": 900})


def _scene(path: Path) -> Path:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(90, 160, (300, 400, 3), dtype=np.uint8))
    d = ImageDraw.Draw(img)
    d.ellipse((60, 60, 140, 150), fill=(230, 190, 160))  # a "face"
    d.rectangle((250, 80, 340, 260), fill=(40, 80, 200))  # a "second person"
    img.save(path)
    return path


def _drag(page, canvas, x0, y0, x1, y1):
    box = canvas.bounding_box()  # where the canvas is now: the page above it may have re-laid out since the last drag
    page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + x1 * box["width"], box["y"] + y1 * box["height"], steps=6)
    page.mouse.up()


def test_upload_draw_boxes_by_kind_run_and_see_labels(server, page, tmp_path):
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/")
    page.wait_for_selector("#tasks[data-ready='1']", timeout=15000)
    # the model card's line, and the loud banner of an untrained preset
    page.wait_for_selector("#warning-banner.shown", timeout=15000)
    assert "UNTRAINED" in page.inner_text("#warning-banner") and "UNTRAINED" in page.inner_text("#model-card")
    assert "(hand)" in page.inner_text("#tasks") and "(person + person)" in page.inner_text("#tasks")
    page.set_input_files("#file", str(_scene(tmp_path / "scene.png")))
    # (a selector wait, not wait_for_function: a string predicate needs eval, which the page's CSP forbids)
    page.wait_for_selector("#hint", state="hidden", timeout=15000)
    canvas = page.locator("#canvas")
    assert canvas.evaluate("c => [c.width, c.height]") == [400, 300]
    page.select_option("#kind", "face")
    _drag(page, canvas, 0.15, 0.2, 0.35, 0.5)  # the face
    page.wait_for_selector("#box-0")
    page.select_option("#kind", "person")
    _drag(page, canvas, 0.1, 0.15, 0.4, 0.95)  # the first person
    page.wait_for_selector("#box-1")
    _drag(page, canvas, 0.62, 0.27, 0.85, 0.87)  # the second person
    page.wait_for_selector("#box-2")
    kinds = [page.locator(f"#box-kind-{i}").input_value() for i in range(3)]
    assert kinds == ["face", "person", "person"]
    page.uncheck("#task-expression")
    page.uncheck("#task-gesture")
    for name in ("lam", "relation", "gaze"):
        assert page.is_checked(f"#task-{name}")
    with page.expect_response("**/predict") as resp_info:
        page.click("#run")
    answer = resp_info.value.json()  # (Playwright does not expose a multipart body holding a file: check the answer)
    assert set(answer["tasks"]) == {"lam", "relation", "gaze"}
    assert [b["kind"] for b in answer["boxes"]] == ["face", "person", "person"]
    drawn = [[0.15, 0.2, 0.35, 0.5], [0.1, 0.15, 0.4, 0.95], [0.62, 0.27, 0.85, 0.87]]
    for b, want in zip(answer["boxes"], drawn):
        assert b["xyxy_normalized"] == pytest.approx(want, abs=0.01)  # the mouse drag, in image coordinates
        assert b["source"] == "given"
    assert answer["tasks"]["lam"]["boxes"] == [0] and answer["tasks"]["relation"]["boxes"] == [1, 2]
    page.wait_for_selector("#results[data-state='done']", timeout=30000)
    assert page.inner_text("#label-lam") in ("looking", "not_looking")
    assert page.inner_text("#label-relation") in (
        "friends",
        "family",
        "couple",
        "professional",
        "commercial",
        "no_relation",
    )
    assert page.inner_text("#skipped-gaze") == "skipped: no head box"  # no head box drawn: gaze never reads the face
    assert "UNTRAINED" in page.inner_text("#result-warning")
    assert page.locator("#result-expression").count() == 0  # unticked tasks are not run
    assert page.locator("#result-relation .bar-row").count() == 5
    shot = tmp_path / "socialfusion_page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    print(f"\nscreenshot: {shot}")
    assert not errors, errors


def test_an_example_loads_with_its_boxes_and_every_task_runs(server, page):
    page.goto(server + "/")
    page.wait_for_selector("#examples[data-ready='1']", timeout=15000)
    page.click("#example-two-people")
    page.wait_for_selector("#hint", state="hidden", timeout=15000)
    page.wait_for_selector("#box-4")
    kinds = sorted(page.locator(f"#box-kind-{i}").input_value() for i in range(5))
    assert kinds == ["face", "hand", "head", "person", "person"]
    with page.expect_response("**/predict") as resp_info:
        page.click("#run")
    answer = resp_info.value.json()
    assert not [n for n, t in answer["tasks"].items() if "skipped" in t], answer["tasks"]
    page.wait_for_selector("#results[data-state='done']", timeout=30000)
    assert page.inner_text("#label-gesture")


def test_the_page_asks_for_the_api_key_and_sends_it(keyed_server, page):
    page.goto(keyed_server + "/")
    page.wait_for_selector("#auth.shown", timeout=15000)
    assert "API key" in page.inner_text("#status")
    page.fill("#api-key", "page-key")
    page.click("#api-key-save")
    page.wait_for_selector("#tasks[data-ready='1']", timeout=15000)
    page.wait_for_selector("#examples[data-ready='1']", timeout=15000)
    assert "UNTRAINED" in page.inner_text("#model-card")
    page.click("#example-face-and-hand")
    page.wait_for_selector("#box-2")
    with page.expect_response("**/predict") as resp_info:
        page.click("#run")
    assert resp_info.value.status == 200
    page.evaluate("sessionStorage.clear()")


def test_docs_list_the_operations_with_no_network(server, browser):
    """Swagger UI from the fastapi-offline wheel: every request the docs page makes goes to the service itself
    (anything else is recorded and aborted, as it would fail on a machine with no network)."""
    outside = []

    def local_only(route):
        if route.request.url.startswith(server):
            return route.continue_()
        outside.append(route.request.url)
        return route.abort()

    context = browser.new_context()
    try:
        context.route("**/*", local_only)
        pg = context.new_page()
        pg.goto(server + "/docs")
        pg.wait_for_selector(".opblock", timeout=20000)
        text = pg.inner_text("#swagger-ui")
    finally:
        context.close()
    for path in ("/predict", "/health", "/tasks", "/model_card", "/examples"):
        assert path in text, path
    assert not outside, f"the docs page reached outside the service: {outside}"


def test_page_shows_the_servers_error_for_a_bad_file(server, page, tmp_path):
    bad = tmp_path / "fake.png"
    bad.write_bytes(b"not an image at all")
    page.goto(server + "/")
    page.wait_for_selector("#tasks[data-ready='1']", timeout=15000)
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#status.error", timeout=15000)  # the browser cannot show it either
    page.click("#run")
    page.wait_for_selector("#results[data-state='error']", timeout=15000)
    assert "not a readable image" in page.inner_text("#error")
