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
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is absent (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is absent (pip install playwright)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    import uvicorn

    from socialfusion.api import SocialFusion
    from socialfusion.serve.http import create_app

    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: intra-op threads only spin against the browser on 2 cores
    app = create_app(SocialFusion.from_pretrained("tiny", device="cpu"))
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def page():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            pg = browser.new_page(viewport={"width": 1280, "height": 900})
            yield pg
        finally:
            browser.close()


def _scene(path: Path) -> Path:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(90, 160, (300, 400, 3), dtype=np.uint8))
    d = ImageDraw.Draw(img)
    d.ellipse((60, 60, 140, 150), fill=(230, 190, 160))  # a "face"
    d.rectangle((250, 80, 340, 260), fill=(40, 80, 200))  # a "second person"
    img.save(path)
    return path


def _drag(page, box, x0, y0, x1, y1):
    page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + x1 * box["width"], box["y"] + y1 * box["height"], steps=6)
    page.mouse.up()


def test_upload_draw_boxes_run_and_see_labels(server, page, tmp_path):
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/")
    page.wait_for_selector("#tasks[data-ready='1']", timeout=15000)
    page.set_input_files("#file", str(_scene(tmp_path / "scene.png")))
    # (a selector wait, not wait_for_function: a string predicate needs eval, which the page's CSP forbids)
    page.wait_for_selector("#hint", state="hidden", timeout=15000)
    canvas = page.locator("#canvas")
    assert canvas.evaluate("c => [c.width, c.height]") == [400, 300]
    box = canvas.bounding_box()
    _drag(page, box, 0.15, 0.2, 0.35, 0.5)  # role 0: the face
    page.wait_for_selector("#box-0")
    page.select_option("#role", "1")
    _drag(page, box, 0.62, 0.27, 0.85, 0.87)  # role 1: the second person
    page.wait_for_selector("#box-1")
    assert page.locator("#box-role-0").input_value() == "0" and page.locator("#box-role-1").input_value() == "1"
    page.uncheck("#task-expression")
    page.uncheck("#task-gesture")
    for name in ("lam", "relation", "gaze"):
        assert page.is_checked(f"#task-{name}")
    with page.expect_response("**/predict") as resp_info:
        page.click("#run")
    answer = resp_info.value.json()  # (Playwright does not expose a multipart body holding a file: check the answer)
    assert set(answer["tasks"]) == {"lam", "relation", "gaze"}
    roles = [b["role"] for b in answer["boxes"]]
    assert roles == [0, 1]
    drawn = [[0.15, 0.2, 0.35, 0.5], [0.62, 0.27, 0.85, 0.87]]
    for b, want in zip(answer["boxes"], drawn):
        assert b["xyxy_normalized"] == pytest.approx(want, abs=0.01)  # the mouse drag, in image coordinates
        assert b["source"] == "given"
    page.wait_for_selector("#results[data-state='done']", timeout=30000)
    assert page.inner_text("#label-lam") in ("looking", "not_looking")
    assert page.inner_text("#label-relation") in ("friends", "family", "couple", "professional", "commercial", "no_relation")
    assert page.inner_text("#label-gaze").endswith("px")
    assert page.locator("#result-expression").count() == 0  # unticked tasks are not run
    assert page.locator("#result-relation .bar-row").count() == 5
    shot = tmp_path / "socialfusion_page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    print(f"\nscreenshot: {shot}")
    assert not errors, errors


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
