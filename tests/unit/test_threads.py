"""--threads on predict, serve and the API: the count is set for the process (torch and the detectors), "auto" is
half the available cores (1 on 2 cores), a bad value is a one-line usage error."""

import warnings

import pytest
import torch
from PIL import Image

from socialfusion import cli
from socialfusion.runtime import default_threads, parse_threads, set_threads


@pytest.fixture(autouse=True)
def restore_threads():
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def test_the_rule_and_its_values():
    assert [default_threads(c) for c in (1, 2, 3, 4, 16)] == [1, 1, 1, 2, 8]
    assert set_threads(2) == 2 == torch.get_num_threads()
    assert set_threads(None) == 2  # None leaves torch's setting alone
    assert set_threads("auto") == default_threads() == torch.get_num_threads()
    for bad in (0, -1, 1.5, True, "two"):
        with pytest.raises(ValueError, match="threads must be"):
            set_threads(bad)
    assert parse_threads("auto") == "auto" and parse_threads(" 3 ") == 3


def test_api_threads_apply_to_the_process_and_the_detectors(monkeypatch):
    from socialfusion import detect as D
    from socialfusion.api import SocialFusion

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = SocialFusion.from_pretrained("tiny", device="cpu", threads=2)
    assert model.threads == 2 == torch.get_num_threads()
    seen = []
    monkeypatch.setattr(D, "detect", lambda image, threads=None, **kw: seen.append(threads) or [])
    model.predict(Image.new("RGB", (40, 30)), detect=True)
    assert seen == [2]


def test_predict_threads_option(tmp_path, capsys):
    Image.new("RGB", (40, 30), (10, 200, 30)).save(tmp_path / "a.png")
    argv = [
        "predict",
        "--ckpt",
        "tiny",
        "--images",
        str(tmp_path / "a.png"),
        "--tasks",
        "lam",
        "--out",
        str(tmp_path / "o"),
        "--no-progress",
    ]
    torch.set_num_threads(2)
    assert cli.main([*argv, "--threads", "1"]) == 0
    assert torch.get_num_threads() == 1
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:  # argparse's usage error: status 2, one line naming the option
        cli.main([*argv, "--threads", "0"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--threads must be a count >= 1 or auto, got '0'" in err and "Traceback" not in err


def test_serve_threads_option(monkeypatch, capsys):
    import uvicorn

    from socialfusion.serve.http import main

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    assert main(["--ckpt", "tiny", "--device", "cpu", "--threads", "2"]) == 0
    assert torch.get_num_threads() == 2 and "CPU threads: 2" in capsys.readouterr().err
