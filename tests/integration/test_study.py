"""`socialfusion study` end to end on the tiny preset: every stage, a joint-run variant, the report's opening section,
resumption stage by stage, and the report seen in a real browser (Debian's Chromium through Playwright)."""

import json
import re
from pathlib import Path

import pytest
import torch

from socialfusion.cli import main as cli_main

DIRS = {"lam": "ego4d_lam", "expression": "affectnet"}
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One study (2 tasks, 2 seeds, a variant) run through the CLI; returns (out, argv, printed lines)."""
    from socialfusion.data.synth import generate

    root = tmp_path_factory.mktemp("study")
    generate(root / "data", n=24, seed=0, image_size=96, datasets=list(DIRS.values()))
    out = root / "out"
    argv = [
        "study",
        "tiny",
        "--out",
        str(out),
        "--tasks",
        "lam,expression",
        "--seeds",
        "2",
        "--gradconf-batches",
        "2",
        "--probe-samples",
        "16",
        "--probe-layers",
        "-1",
        "--probe-gaze-steps",
        "5",
        "--resamples",
        "50",
        "--no-progress",
        "--variant",
        "mixed=data.sampler=round_robin,train.grad_accum=2,train.steps=2",
        "train.steps=2",
        "train.warmup_steps=1",
        f"train.cache_dir={root / 'cache'}",
        "train.eval_batch_size=8",
        "train.eval_every=1",
        "train.early_stop_patience=1",
    ]  # the plateau protocol at the tiny scale
    argv += [f"data.tasks.{t}.root={root / 'data' / d}" for t, d in DIRS.items()]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models run fastest single-threaded
    try:
        assert cli_main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    return out, argv


def _stages_run(capsys_text: str) -> set[str]:
    return {line[3:].strip() for line in capsys_text.splitlines() if line.startswith("== ") and "reused" not in line}


def test_study_runs_every_stage_and_opens_with_the_answer(study):
    out, _ = study
    state = json.loads((out / "study.json").read_text())
    assert set(state["stages"]) == {"transfer", "gradconf", "probe", "report"}
    transfer = json.loads((out / "transfer" / "transfer.json").read_text())
    assert set(transfer["families"]) == {"socialfusion", "socialfusion:mixed"}
    assert transfer["families"]["socialfusion"]["seeds"] == [0, 1]
    # the variant trains only its joint run; its single-task side is the family's own runs
    mixed_runs = transfer["runs_by_seed"]["socialfusion:mixed"]["0"]
    assert mixed_runs["joint"]["dir"].endswith("seed-0/joint-mixed")
    assert mixed_runs["single-lam"] == transfer["runs_by_seed"]["socialfusion"]["0"]["single-lam"]
    assert json.loads((out / "gradconf" / "gradconf.json").read_text())["batches"] == 2

    md = (out / "report.md").read_text()
    assert md.index("## The question and the answer") < md.index("## Per-task metrics")
    opening = md.split("## The question and the answer", 1)[1].split("\n## ", 1)[0]
    assert "**Question.**" in opening and "**What was run.**" in opening and "**Answer.**" in opening
    assert "synthetic social scenes" in opening
    # from the runs' manifest and metrics: lam and expression select on a holdout of train and report on val
    assert re.search(
        r"lam \d+ train / \d+ selection \(holdout\) / \d+ report \(val\); "
        r"expression \d+ train / \d+ selection \(holdout\) / \d+ report \(val\)",
        opening,
    )
    assert "scored at its best evaluation" in opening
    for family in ("| socialfusion |", "| socialfusion:mixed |"):
        assert family in opening
    assert "Against the paper's claim: SocialFusion here shows positive transfer on" in opening
    assert "2 seed(s) (0, 1)" in opening
    # the learning curves (selection metric against step, single-task vs joint, the selected step) and the probe floor
    assert "![learning_curves](figures/learning_curves.png)" in md and "best linear probe" in md
    assert (out / "figures" / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_second_run_reuses_finished_stages_and_reruns_what_changed(study, capsys):
    out, argv = study
    before = json.loads((out / "study.json").read_text())["stages"]
    joint_weights = (
        out / "transfer" / "socialfusion" / "seed-0" / "joint" / "checkpoints" / "last" / "trainable.safetensors"
    )
    mtime = joint_weights.stat().st_mtime_ns
    torch.set_num_threads(1)
    # same command with another gradient-conflict size: transfer and probes are reused, gradconf and the report rerun
    assert cli_main([a if a != "2" or argv[i - 1] != "--gradconf-batches" else "3" for i, a in enumerate(argv)]) == 0
    printed = capsys.readouterr().out
    assert "transfer: single-task and joint training + evaluation: finished earlier" in printed
    assert "linear probes: finished earlier" in printed
    assert _stages_run(printed) == {"gradient conflict", "report"}
    assert joint_weights.stat().st_mtime_ns == mtime  # nothing retrained
    after = json.loads((out / "study.json").read_text())["stages"]
    assert after["transfer"] == before["transfer"] and after["gradconf"]["params"]["gradconf_batches"] == 3


def test_a_stage_without_its_transfer_is_one_error_line(study, tmp_path, capsys):
    _, argv = study
    i = argv.index("--out")
    rc = cli_main([*argv[: i + 1], str(tmp_path / "empty"), *argv[i + 2 :], "--stages", "gradconf"])
    err = capsys.readouterr().err
    assert (
        rc == 2
        and "the gradconf stage needs the transfer stage's joint model" in err
        and "hint: run the transfer stage first" in err
    )


def test_study_refuses_a_bad_variant_before_training(tmp_path, capsys):
    rc = cli_main(["study", "tiny", "--out", str(tmp_path / "o"), "--variant", "x=train.no_such_key=1"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error:") and "no_such_key" in err
    assert not (tmp_path / "o" / "transfer").exists()


def test_the_report_in_a_browser_opens_with_the_answer(study, tmp_path):
    """Chromium renders report.html (all figures embedded, no outside request); the question-and-answer section is
    the first section, visible without scrolling, and the screenshot is not blank."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install -y chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is absent (pip install playwright)"
    )
    from PIL import Image

    out, _ = study
    requests = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("request", lambda r: requests.append(r.url))
        page.goto((out / "report.html").as_uri())
        headings = page.locator("h2").all_inner_texts()
        assert headings[0] == "The question and the answer"
        box = page.locator("#the-question-and-the-answer").bounding_box()
        assert box is not None and box["y"] < 900
        assert page.locator("text=Against the paper's claim").first.is_visible()
        assert page.locator("img").count() >= 4 and all(
            page.locator("img").evaluate_all("els => els.map(e => e.naturalWidth > 0)")
        )
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot))
        browser.close()
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    pixels = Image.open(shot).convert("L")
    lo, hi = pixels.getextrema()
    assert hi - lo > 100  # text on a background, not a blank page
