"""What a user meets at the console: user errors as one line (+ a hint line) with exit status 2 and no traceback,
one grammar across verbs (overrides anywhere, tasks by name, --version, help on every option), quiet model loads,
boxes slightly outside the image clipped, and a training run that ends by naming what it wrote."""

import argparse
import json
import os
import subprocess
import sys
import warnings

import pytest
import torch

from socialfusion import __version__, cli
from socialfusion.config import ConfigError, apply_overrides, load_config
from socialfusion.errors import UserError


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_user_error(rc: int, err: str, *needles: str, hint: str | None = None) -> None:
    """Exit 2; stderr is `error: ...` and at most a `hint: ...` line; no traceback; each needle in the error."""
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert "Traceback" not in err
    assert lines and lines[0].startswith("error: "), err
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint: ")), err
    for needle in needles:
        assert needle in lines[0], (needle, err)
    if hint is not None:
        assert len(lines) == 2 and hint in lines[1], (hint, err)


@pytest.fixture()
def no_model_build(monkeypatch):
    """Fails a test that builds a model: the errors below must come before the (slow) model load."""
    import socialfusion.models.factory as factory

    def refuse(*args, **kwargs):
        raise AssertionError("a model was built before the user error was found")

    monkeypatch.setattr(factory, "build_model", refuse)


# ---- user errors: one line, a hint, exit 2 ------------------------------------------------------------------


def test_missing_checkpoint_says_it_does_not_exist(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "eval", "--ckpt", tmp_path / "no" / "such" / "dir", "--out", tmp_path / "e")
    assert_user_error(rc, err, "does not exist")
    assert "interrupted" not in err


def test_run_folder_given_for_a_checkpoint_suggests_its_last_checkpoint(capsys, tmp_path):
    last = tmp_path / "run" / "checkpoints" / "last"
    last.mkdir(parents=True)
    (last / "COMPLETE").write_text("ok\n")
    rc, _, err = run_cli(capsys, "eval", "--ckpt", tmp_path / "run", "--out", tmp_path / "e")
    assert_user_error(rc, err, "not a checkpoint", hint=f"did you mean {last}?")
    assert "interrupted" not in err
    rc, _, err = run_cli(capsys, "merge-lora", "--ckpt", tmp_path / "run" / "checkpoints", "--out", tmp_path / "m")
    assert_user_error(rc, err, hint=f"did you mean {last}?")


def test_half_written_checkpoint_is_the_interrupted_story(capsys, tmp_path):
    partial = tmp_path / "last"
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    rc, _, err = run_cli(capsys, "eval", "--ckpt", partial, "--out", tmp_path / "e")
    assert_user_error(rc, err, "not a complete checkpoint", "interrupted")


def test_missing_synthetic_data_root_gives_the_synth_command(capsys, tmp_path, monkeypatch, no_model_build):
    monkeypatch.chdir(tmp_path)  # the presets' roots are data/synth/<dataset>, relative to where the command runs
    rc, _, err = run_cli(capsys, "train", "tiny", "--tasks", "relation", "--out", "runs/relation")
    assert_user_error(
        rc,
        err,
        "relation",
        str(tmp_path / "data" / "synth" / "pisc"),
        hint=f"socialfusion data synth --out {tmp_path / 'data' / 'synth'}",
    )


def test_missing_other_data_root_names_the_config_key(capsys, tmp_path, no_model_build):
    rc, _, err = run_cli(
        capsys,
        "train",
        "tiny",
        "--tasks",
        "expression",
        f"data.tasks.expression.root={tmp_path / 'mine'}",
        "--out",
        tmp_path / "r",
    )
    assert_user_error(rc, err, str(tmp_path / "mine"), hint="check data.tasks.expression.root")


def test_unknown_config_key_lists_the_known_ones(capsys, tmp_path, no_model_build):
    rc, _, err = run_cli(capsys, "train", "tiny", "train.lrr=1e-3", "--out", tmp_path / "r")
    assert_user_error(rc, err, "train.lrr", "known:", "lr")
    rc, _, err = run_cli(capsys, "plan", "tiny", "model.nosuch=1")
    assert_user_error(rc, err, "model.nosuch", "known:")


def test_unknown_task_is_refused_before_the_model_loads(capsys, tmp_path, no_model_build):
    rc, _, err = run_cli(capsys, "train", "tiny", "--tasks", "smile", "--out", tmp_path / "r")
    assert_user_error(rc, err, "smile", "lam", "gaze")
    rc, _, err = run_cli(capsys, "train", "tiny", "data.tasks.smile.root=/x", "--out", tmp_path / "r")
    assert_user_error(rc, err, "smile", "expression")
    rc, _, err = run_cli(
        capsys,
        "predict",
        "--ckpt",
        "tiny",
        "--images",
        tmp_path / "a.png",
        "--tasks",
        "lam,smile",
        "--out",
        tmp_path / "p",
    )
    assert_user_error(rc, err, "smile", "known: lam")


def test_unknown_verb_and_version(capsys):
    rc, _, err = run_cli(capsys, "frobnicate")
    assert_user_error(rc, err, "frobnicate", hint="train")
    for flag in ("--version", "-V"):
        rc, out, _ = run_cli(capsys, flag)
        assert rc == 0 and out.splitlines()[0] == f"socialfusion {__version__}"


def test_version_says_whether_this_cpu_has_native_bf16_and_what_auto_resolves_to(capsys, monkeypatch):
    from socialfusion import runtime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for native, auto in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(runtime, "cpu_has_bf16", lambda native=native: native)
        rc, out, _ = run_cli(capsys, "--version")
        cpu = next(line for line in out.splitlines() if line.startswith("cpu: "))
        assert (
            rc == 0 and f"native bf16: {'yes' if native else 'no'}" in cpu and cpu.endswith(f"precision auto -> {auto}")
        ), out
        assert "cuda: none" in out
    # and on this machine, what runtime decides
    monkeypatch.undo()
    rc, out, _ = run_cli(capsys, "--version")
    assert f"precision auto -> {runtime.resolve_precision('cpu', 'auto')}" in out


def test_debug_anywhere_or_in_the_environment_shows_the_traceback(capsys, tmp_path, monkeypatch):
    for argv in (["--debug", "eval"], ["eval", "--debug"]):
        rc, _, err = run_cli(capsys, *argv, "--ckpt", tmp_path / "none", "--out", tmp_path / "e")
        assert rc == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("error: ")
    assert os.environ.get("SOCIALFUSION_DEBUG") is None  # the flag does not outlive the command
    monkeypatch.setenv("SOCIALFUSION_DEBUG", "1")
    rc, _, err = run_cli(capsys, "eval", "--ckpt", tmp_path / "none", "--out", tmp_path / "e")
    assert rc == 2 and "Traceback" in err


def test_an_unexpected_exception_keeps_its_traceback(monkeypatch):
    import socialfusion.commands as commands

    def bug(argv):
        raise KeyError("a bug, not a user error")

    monkeypatch.setattr(commands, "main_plan", bug)
    with pytest.raises(KeyError):
        cli.main(["plan", "tiny"])


def test_user_errors_through_the_console_entry_point(tmp_path):
    """The real process: `python -m socialfusion.cli` (what the `socialfusion` script runs)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("SOCIALFUSION_DEBUG", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "socialfusion.cli",
            "eval",
            "--ckpt",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "e"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert_user_error(proc.returncode, proc.stderr, "does not exist")


# ---- one grammar ---------------------------------------------------------------------------------------------


def test_overrides_anywhere_on_the_line(capsys, tmp_path, no_model_build):
    """The same words before or after an option: the override reaches the config (here: a root that is missing)."""
    for argv in (
        ["train", "tiny", "--tasks", "expression", f"data.tasks.1.root={tmp_path / 'x'}", "--out", tmp_path / "r"],
        ["train", "tiny", f"data.tasks.1.root={tmp_path / 'x'}", "--tasks", "expression", "--out", tmp_path / "r"],
        [
            "train",
            "--out",
            tmp_path / "r",
            "tiny",
            "--tasks",
            "expression",
            f"data.tasks.expression.root={tmp_path / 'x'}",
        ],
    ):
        rc, _, err = run_cli(capsys, *argv)
        assert_user_error(rc, err, str(tmp_path / "x"))
    rc, _, err = run_cli(capsys, "train", "train.steps=3", "tiny", "--out", tmp_path / "r")
    assert_user_error(rc, err, "train.steps=3", hint="preset first")


def test_tasks_addressable_by_name_or_index_in_overrides(tiny_config):
    by_name = apply_overrides(
        tiny_config, ["data.tasks.expression.root=/data/affectnet", "data.tasks.gaze.loss_weight=2"]
    )
    by_index = apply_overrides(tiny_config, ["data.tasks.1.root=/data/affectnet", "data.tasks.-1.loss_weight=2"])
    assert by_name.data.tasks == by_index.data.tasks
    assert by_name.data.tasks[1].root == "/data/affectnet" and by_name.data.tasks[4].loss_weight == 2.0
    for bad, needle in (("data.tasks.smile.root=/x", "no task 'smile'"), ("data.tasks.9.root=/x", "no index 9")):
        with pytest.raises(ConfigError, match=needle):
            apply_overrides(tiny_config, [bad])
    assert load_config("tiny", ["data.tasks.relation.loss_weight=0.5"]).data.tasks[3].loss_weight == 0.5


def test_relative_paths_become_absolute_when_loaded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config("tiny", ["train.cache_dir=cache"])
    assert [td.root for td in config.data.tasks][0] == str(tmp_path / "data" / "synth" / "ego4d_lam")
    assert config.train.cache_dir == str(tmp_path / "cache")


class _Captured(Exception):
    def __init__(self, parser):
        self.parser = parser


def _verb_parser(verb: str, monkeypatch) -> argparse.ArgumentParser:
    """The parser a verb builds, caught when it starts parsing."""

    def capture(self, *args, **kwargs):
        raise _Captured(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_intermixed_args", capture)
    try:
        cli.verb_entry(verb)(["--out", "x"])
    except _Captured as caught:
        return caught.parser
    raise AssertionError(f"{verb}: no parser seen")


def _parsers(parser: argparse.ArgumentParser, name: str):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


@pytest.mark.parametrize("verb", list(cli.VERBS))
def test_every_option_of_every_verb_has_help(verb, monkeypatch):
    missing = []
    for name, parser in _parsers(_verb_parser(verb, monkeypatch), verb):
        for action in parser._actions:
            if (
                isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
                or action.help == argparse.SUPPRESS
            ):
                continue  # SUPPRESS: a former name kept as a hidden alias
            if not (action.help or "").strip():
                missing.append(f"{name}: {'/'.join(action.option_strings) or action.dest}")
        options = {s for a in parser._actions for s in a.option_strings}
        if name == verb or name.startswith("data "):
            assert {"--verbose", "--debug"} <= options or name == "data", name
    assert not missing, missing


def test_the_same_names_for_the_same_things(monkeypatch):
    """--max-samples in eval and probe (eval's --limit kept as a hidden alias); eval's overrides positional, its
    former --data hidden."""
    for verb in ("eval", "probe"):
        parser = _verb_parser(verb, monkeypatch)
        actions = {s: a for a in parser._actions for s in a.option_strings}
        assert actions["--max-samples"].help != argparse.SUPPRESS
        assert actions["--limit"].dest == "max_samples" and actions["--limit"].help == argparse.SUPPRESS
    parser = _verb_parser("eval", monkeypatch)
    assert any(a.dest == "overrides" and not a.option_strings for a in parser._actions)


# ---- quiet by default ----------------------------------------------------------------------------------------


def test_loading_is_quiet_unless_verbose(monkeypatch):
    from transformers.utils import logging as hf_logging

    from socialfusion.models.loading import quiet_loading

    before = (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled())
    monkeypatch.delenv("SOCIALFUSION_VERBOSE", raising=False)
    with quiet_loading():
        assert hf_logging.get_verbosity() == hf_logging.ERROR and not hf_logging.is_progress_bar_enabled()
    assert (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()) == before  # scoped, restored
    monkeypatch.setenv("SOCIALFUSION_VERBOSE", "1")
    with quiet_loading():
        assert (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()) == before


def test_building_a_model_with_checkpointing_warns_nothing(tiny_config):
    """No FutureWarning from our calls of transformers/peft (checkpointing and LoRA), whatever the filters."""
    from socialfusion.models.factory import build_model
    from socialfusion.tasks import tasks_from_config

    config = apply_overrides(tiny_config, ["model.llm.gradient_checkpointing=true"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = build_model(config.model, tasks=tasks_from_config(config))
    assert not [w for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))], [
        str(w.message) for w in caught
    ]
    assert model.llm.get_base_model().is_activation_checkpointing


# ---- boxes slightly outside the image ------------------------------------------------------------------------


def test_box_slightly_outside_is_clipped_wholly_outside_is_an_error():
    from socialfusion.api import BoxError, parse_box
    from socialfusion.data.adapters._boxes import UnusableBox, clip_to_image

    box, clipped = clip_to_image([0, -1, 65, 24], 64, 48)  # 1 px past two borders
    assert clipped and box == (0.0, 0.0, 1.0, 0.5)
    assert clip_to_image([0, 0, 64, 48], 64, 48) == ((0.0, 0.0, 1.0, 1.0), False)
    with pytest.raises(UnusableBox, match="wholly outside"):
        clip_to_image([70, 0, 80, 10], 64, 48)
    with pytest.raises(UnusableBox, match="outside the image"):
        clip_to_image([0.1, 0.1, 1.5, 0.4], 1, 1)  # half an image out: a mistake, not a detector's rounding
    parsed = parse_box({"xyxy": [10, 10, 65, 30]}, (64, 48), "img.png, box 0")
    assert parsed["clipped"] and parsed["xyxy"] == pytest.approx([10, 10, 64, 30])
    assert "clipped" not in parse_box({"xyxy": [10, 10, 60, 30]}, (64, 48))
    with pytest.raises(BoxError, match=r"img.png, box 0: .*wholly outside"):
        parse_box({"xyxy": [100, 10, 120, 30]}, (64, 48), "img.png, box 0")


def test_predict_notes_a_clipped_box_and_keeps_the_image(capsys, tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 48), (120, 80, 40)).save(tmp_path / "a.png")
    Image.new("RGB", (64, 48), (20, 80, 140)).save(tmp_path / "b.png")
    boxes = {"a.png": [{"xyxy": [10, 10, 65, 30], "role": 0}], "b.png": [{"xyxy": [100, 10, 120, 30], "role": 0}]}
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the untrained preset's warning
        rc, _, err = run_cli(
            capsys,
            "predict",
            "--ckpt",
            "tiny",
            "--images",
            tmp_path / "a.png",
            tmp_path / "b.png",
            "--boxes",
            tmp_path / "boxes.json",
            "--tasks",
            "lam",
            "--out",
            out,
            "--no-progress",
        )
    assert rc == 0, err
    [rec] = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert rec["image"].endswith("a.png") and any("clipped" in n for n in rec["notes"])
    summary = json.loads((out / "summary.json").read_text())
    assert (
        summary["clipped_boxes"] == 1
        and summary["skipped"] == 1
        and "wholly outside" in summary["skipped_files"][0]["reason"]
    )
    assert err.count("were clipped") == 1  # reported once per run


# ---- a run that ends by naming what it wrote, and works from anywhere ----------------------------------------


def test_train_in_one_directory_evaluate_from_another(synth_root, tmp_path, monkeypatch, capsys):
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    (here / "data").mkdir(parents=True)
    elsewhere.mkdir()
    (here / "data" / "synth").symlink_to(synth_root)  # the preset's relative roots, data/synth/<dataset>
    monkeypatch.chdir(here)
    rc, out, err = run_cli(
        capsys,
        "train",
        "tiny",
        "--tasks",
        "expression",
        "train.steps=1",
        "train.cache_dir=cache",
        "--out",
        "run",
        "--no-progress",
    )
    assert rc == 0, err
    tail = out.strip().splitlines()[-3:]
    assert tail[0] == f"checkpoint: {here / 'run' / 'checkpoints' / 'last'} (step 1)"
    assert tail[1].startswith("best: none") and tail[2].startswith(f"report: {here / 'run' / 'log.jsonl'}")
    saved = json.loads((here / "run" / "checkpoints" / "last" / "config.json").read_text())["config"]
    assert saved["data"]["tasks"][0]["root"] == str(here / "data" / "synth" / "affectnet")
    for line in (here / "run" / "log.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))

    monkeypatch.chdir(elsewhere)
    rc, out, err = run_cli(
        capsys,
        "eval",
        "--ckpt",
        here / "run" / "checkpoints" / "last",
        "--out",
        "ev",
        "--max-samples",
        "4",
        "--no-progress",
    )
    assert rc == 0, err
    results = json.loads(
        (elsewhere / "ev" / "results.json").read_text(), parse_constant=lambda c: pytest.fail(f"not JSON: {c}")
    )
    assert results["metrics"]["expression"]["n"] == 4


def test_train_summary_lines():
    from socialfusion.commands import train_summary

    base = {"out_dir": "/r", "step": 5, "skips": {"total": 0}}
    none = train_summary({**base, "best": None}).splitlines()
    assert none[1].startswith("best: none") and "-inf" not in "".join(none).lower()
    best = train_summary({**base, "best": 0.8125, "skips": {"total": 3}}).splitlines()
    assert best[1] == "best: mean primary metric 0.8125 on val, /r/checkpoints/best" and "3 skipped records" in best[2]
    assert isinstance(UserError("x", hint="y"), Exception) and UserError("x", hint="y").hint == "y"
