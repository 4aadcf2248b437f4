"""`--tasks` narrows what every verb checks and loads (a user with one dataset runs any verb on it from a preset),
`python -m socialfusion` is the same dispatcher as the script, and every verb's --help is plain text."""

import subprocess
import sys

import pytest

from socialfusion import cli

# each verb that reads data, with a --tasks value it accepts (gradient conflict needs two tasks)
VERBS = [
    ("train", "expression", ["--out", "{tmp}/run"]),
    ("cache-features", "expression", []),
    ("probe", "expression", ["--out", "{tmp}/probe"]),
    ("gradconf", "expression,gaze", ["--out", "{tmp}/gc"]),
    ("transfer", "expression", ["--out", "{tmp}/tr"]),
    ("study", "expression", ["--out", "{tmp}/st"]),
]


@pytest.mark.parametrize("verb, tasks, extra", VERBS, ids=[v[0] for v in VERBS])
def test_tasks_narrows_the_data_check_of_every_verb(verb, tasks, extra, tmp_path, capsys, monkeypatch):
    """lam (the first task) has no data; with --tasks the verb checks only the named tasks' roots, so the error,
    if any, names a task that was asked for."""
    import socialfusion.models.factory as factory

    monkeypatch.setattr(factory, "build_model", lambda *a, **k: pytest.fail("a model was built before the data check"))
    roots = [f"data.tasks.{t}.root={tmp_path / ('no-' + t)}" for t in ("lam", "expression", "gaze")]
    argv = [verb, "default", *roots, "--tasks", tasks, *(a.format(tmp=tmp_path) for a in extra)]
    rc = cli.main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: "), err
    assert "'expression'" in err and "lam" not in err, err


def test_probe_from_a_preset_with_only_the_named_tasks_data(tmp_path, capsys, monkeypatch):
    """The issue's command: `probe default data.tasks.expression.root=DIR --tasks expression` reaches the probe
    with a config that holds expression only (lam's root, missing, is never checked)."""
    from socialfusion.analysis import probe

    seen = {}

    def fake_run_probe(config, out, **kw):
        seen["tasks"] = [td.task for td in config.data.tasks]
        (tmp_path / "p").mkdir(exist_ok=True)
        (tmp_path / "p" / "probe.md").write_text("probed\n")

    monkeypatch.setattr(probe, "run_probe", fake_run_probe)
    (tmp_path / "affectnet").mkdir()
    rc = cli.main(
        [
            "probe",
            "default",
            f"data.tasks.lam.root={tmp_path / 'absent'}",
            f"data.tasks.expression.root={tmp_path / 'affectnet'}",
            "--tasks",
            "expression",
            "--out",
            str(tmp_path / "p"),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert seen["tasks"] == ["expression"]


def test_plan_reads_no_data():
    from argparse import Namespace

    from socialfusion.commands import _load

    config = _load(
        Namespace(config="default", overrides=["data.tasks.lam.root=/no/such/dir"], tasks="lam,gaze"), data=False
    )
    assert [td.task for td in config.data.tasks] == ["lam", "gaze"]


def test_python_dash_m_socialfusion_and_plain_text_help():
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "socialfusion", *args], capture_output=True, text=True, timeout=120
        )

    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("socialfusion "), version.stderr
    for verb in ("study", "demo"):
        helped = run(verb, "--help")
        assert helped.returncode == 0, helped.stderr
        assert "**" not in helped.stdout and "`" not in helped.stdout, helped.stdout
    assert "1. transfer (analysis/transfer.py)" in run("study", "--help").stdout  # the numbered layout is kept
    bad = run("frobnicate")
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown verb"), bad.stderr


def test_plain_text_keeps_link_addresses():
    from socialfusion.errors import plain_text

    assert (
        plain_text("see **this** `code` and [the docs](docs/USAGE.md)") == "see this code and the docs (docs/USAGE.md)"
    )
