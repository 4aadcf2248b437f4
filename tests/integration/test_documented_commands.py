"""The clip command of the README's predict section and the curl examples of docs/USAGE.md run as written (their
text is read from the files, so editing an example is editing what is tested). The detector is a fixed one here
(test_predict_video.py runs the real detectors); the checkpoint is the tiny preset."""

from __future__ import annotations

import io
import json
import re
import shlex
from pathlib import Path

import pytest

from socialfusion import cli, detect as D
from tests.conftest import benchmark_script

ROOT = Path(__file__).resolve().parents[2]


def _commands(path: Path, prefix: str) -> list[str]:
    """Lines of the file's bash blocks that start with `prefix` (backslash continuations joined, comments cut)."""
    text = path.read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith(prefix):
                lines.append(shlex.split(line, comments=True))
    return lines


@pytest.fixture()
def fixed_detector(monkeypatch):
    monkeypatch.setattr(D, "require", lambda: None)
    face = (0.3, 0.1, 0.5, 0.4)
    found = [
        D.Detection("face", face, 0.9),
        D.Detection("head", D.head_from_face(face), 0.9),
        D.Detection("person", (0.2, 0.0, 0.7, 1.0), 0.8),
    ]
    monkeypatch.setattr(D, "detect", lambda image, **kw: list(found))


def test_the_readme_clip_command(tmp_path, monkeypatch, capsys, fixed_detector):
    pytest.importorskip("av")
    [argv] = [c for c in _commands(ROOT / "README.md", "socialfusion predict") if "--video" in c]
    bench = benchmark_script("video")
    monkeypatch.chdir(tmp_path)
    bench.write_clip(tmp_path / argv[argv.index("--video") + 1], 1, fps=4, size=(160, 120), people=0)
    rc = cli.main([("tiny" if a == "CKPT" else a) for a in argv[1:]] + ["--no-progress"])
    assert rc == 0, capsys.readouterr().err
    out = tmp_path / argv[argv.index("--out") + 1]
    [clip] = json.loads((out / "tracks.json").read_text())["clips"]
    assert clip["frames"] == 2 and [t["kind"] for t in clip["tracks"]] == ["face", "person"]
    assert (
        set(clip["tracks"][0]["tasks"]) == {"lam", "gaze", "expression"} and (out / clip["annotated_video"]).is_file()
    )


def test_the_usage_curl_examples(tmp_path, fixed_detector):
    """Each `curl ... /predict` of docs/USAGE.md, sent as the same multipart form through the app."""
    import warnings

    from fastapi.testclient import TestClient
    from PIL import Image

    from socialfusion.api import SocialFusion
    from socialfusion.serve.http import create_app

    commands = _commands(ROOT / "docs" / "USAGE.md", "curl")
    assert len(commands) >= 2
    photo = io.BytesIO()
    Image.new("RGB", (320, 240), (90, 120, 150)).save(photo, format="JPEG")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictor = SocialFusion.from_pretrained("tiny", device="cpu")
    with TestClient(create_app(predictor, api_key="k")) as client:
        for argv in commands:
            form, files, headers = {}, {}, {"Authorization": "Bearer k"}
            for flag, value in zip(argv, argv[1:]):
                if flag == "-F":
                    name, _, field = value.partition("=")
                    if field.startswith("@"):
                        files[name] = (field[1:], photo.getvalue(), "image/jpeg")
                    else:
                        form[name] = field
            url = next(a for a in argv if a.startswith("http"))
            resp = client.post(url.replace("http://127.0.0.1:8000", ""), files=files, data=form, headers=headers)
            assert resp.status_code == 200, (argv, resp.text)
            body = resp.json()
            wanted = predictor.resolve_tasks(form.get("tasks", "all"))
            assert list(body["tasks"]) == wanted and all(
                "skipped" not in body["tasks"][t] for t in ("lam", "gaze") if t in wanted
            ), body["tasks"]
