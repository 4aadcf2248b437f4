"""What a user reads stays clean: no object reprs in the service's "not an image" message, and no LiteRT INFO
line on a quiet load (it shows with --verbose, so the silencing is what removes it)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings

import pytest
from PIL import Image

from socialfusion import detect as D


def test_a_text_file_sent_as_an_image_gets_a_clean_message():
    from fastapi.testclient import TestClient

    from socialfusion.api import SocialFusion
    from socialfusion.serve.http import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictor = SocialFusion.from_pretrained("tiny", device="cpu")
    with TestClient(create_app(predictor)) as client:
        resp = client.post(
            "/predict", files={"image": ("notes.png", io.BytesIO(b"hello, I am a text file\n" * 10), "image/png")}
        )
    detail = resp.json()["detail"]
    assert resp.status_code == 415 and detail.startswith("notes.png: not a readable image"), detail
    assert "BytesIO" not in detail and " at 0x" not in detail and "JPEG, PNG" in detail


@pytest.mark.skipif(not D.available(), reason=f"detection packages not installed: {D.EXTRA_HINT}")
def test_detection_loads_quietly_unless_verbose(tmp_path):
    Image.new("RGB", (64, 48), (30, 60, 90)).save(tmp_path / "a.png")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("SOCIALFUSION_VERBOSE", None)
    argv = [
        sys.executable,
        "-m",
        "socialfusion",
        "predict",
        "--ckpt",
        "tiny",
        "--images",
        str(tmp_path / "a.png"),
        "--detect",
        "--tasks",
        "lam",
        "--out",
        str(tmp_path / "o"),
        "--no-progress",
    ]
    quiet = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert "XNNPACK" not in quiet.stderr and "INFO:" not in quiet.stderr, quiet.stderr
    verbose = subprocess.run([*argv, "--verbose"], capture_output=True, text=True, env=env, timeout=300)
    assert "XNNPACK" in verbose.stderr
