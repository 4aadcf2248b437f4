"""One exit-status rule for every verb (docs/USAGE.md, "Exit status"): 0 done, 1 nothing came out, 2 a user error,
3 a bug (from the console script, after its traceback)."""

import sys

import pytest
from PIL import Image

from socialfusion import cli


def test_the_four_statuses(tmp_path, capsys, monkeypatch):
    good, broken = tmp_path / "good.png", tmp_path / "broken.png"
    Image.new("RGB", (40, 30), (200, 30, 30)).save(good)
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    predict = ["predict", "--ckpt", "tiny", "--tasks", "lam", "--no-progress"]
    assert (
        cli.main([*predict, "--images", str(good), str(broken), "--out", str(tmp_path / "a")]) == 0
    )  # one skipped: still done
    assert cli.main([*predict, "--images", str(broken), "--out", str(tmp_path / "b")]) == 1  # every input skipped
    assert (
        cli.main([*predict, "--images", str(tmp_path / "absent.png"), "--out", str(tmp_path / "c")]) == 2
    )  # a user error
    with pytest.raises(SystemExit) as usage:  # argparse's usage errors are 2 as well
        cli.main(["predict", "--no-such-option"])
    assert usage.value.code == 2
    capsys.readouterr()

    import socialfusion.commands as commands

    def bug(argv):
        raise KeyError("a bug, not a user error")

    monkeypatch.setattr(commands, "main_plan", bug)
    monkeypatch.setattr(sys, "argv", ["socialfusion", "plan", "tiny"])
    assert cli.main() == cli.BUG_STATUS == 3  # the console script's path
    err = capsys.readouterr().err
    assert (
        "Traceback" in err
        and "KeyError" in err
        and err.strip().splitlines()[-1].startswith("socialfusion: internal error")
    )
    with pytest.raises(KeyError):  # in-process callers get the exception
        cli.main(["plan", "tiny"])
