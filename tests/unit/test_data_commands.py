import json

import pytest

from socialfusion import cli
from socialfusion.core.schema import read_jsonl
from socialfusion.data import commands as data_commands
from socialfusion.data.commands import main, parse_options
from tests.official_fixtures import write_gazefollow, write_pisc


@pytest.fixture()
def pisc_jsonl(tmp_path):
    root = write_pisc(tmp_path / "pisc")
    out = tmp_path / "pisc_test.jsonl"
    assert main(["prepare", "pisc", "--root", str(root), "--split", "test", "--out", str(out)]) == 0
    return out


def test_prepare_writes_records_with_absolute_root(pisc_jsonl, capsys, tmp_path, monkeypatch):
    samples = list(read_jsonl(pisc_jsonl))
    assert [s.label for s in samples] == [1, 5]
    assert all(s.root == str((tmp_path / "pisc").resolve()) for s in samples)
    monkeypatch.chdir(tmp_path)  # a relative --root still gives absolute records
    assert (
        main(["prepare", "pisc", "--root", "pisc", "--split", "train", "--out", "t.jsonl", "--option", "level=coarse"])
        == 0
    )
    out = capsys.readouterr().out
    assert "wrote 1 pisc train samples" in out and "skipped: 0" in out
    assert list(read_jsonl(tmp_path / "t.jsonl"))[0].root == str((tmp_path / "pisc").resolve())


def test_prepare_prints_the_skip_summary_and_honours_the_policy(tmp_path, capsys):
    root = write_gazefollow(tmp_path / "gf")
    with open(root / "train_annotations_release.txt", "a") as f:
        f.write("train/00000000/00000001.jpg,1,0.1\n")
    args = ["prepare", "gazefollow", "--root", str(root), "--split", "train", "--out", str(tmp_path / "o.jsonl")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "skipped: 2" in out and "row has 3 columns" in out and "protocol: inout -1" in out
    assert cli.main(["data", *args, "--on-bad-sample", "error"]) == 2  # a user error: one line, exit 2
    assert "train_annotations_release.txt:5" in capsys.readouterr().err


def test_prepare_errors(tmp_path, capsys):
    out = str(tmp_path / "o.jsonl")
    assert cli.main(["data", "prepare", "pisc", "--root", str(tmp_path), "--split", "test", "--out", out]) == 2
    assert "annotation_image_info.json" in capsys.readouterr().err
    assert main(["prepare", "nosuch", "--root", str(tmp_path), "--split", "test", "--out", out]) == 2
    assert "unknown dataset" in capsys.readouterr().err
    assert (
        main(["prepare", "pisc", "--root", str(tmp_path), "--split", "test", "--out", out, "--option", "colour=red"])
        == 2
    )
    assert "level" in capsys.readouterr().err


def test_parse_options_types_values():
    assert parse_options(["stride=13", "val_fraction=0.05", "challenge=true", "level=coarse"]) == {
        "stride": 13,
        "val_fraction": 0.05,
        "challenge": True,
        "level": "coarse",
    }


def test_validate_passes_on_good_records(pisc_jsonl, capsys):
    assert main(["validate", str(pisc_jsonl)]) == 0
    assert "2 records, 0 bad" in capsys.readouterr().out


def test_validate_fails_past_the_threshold(pisc_jsonl, capsys, tmp_path):
    records = [json.loads(line) for line in pisc_jsonl.read_text().splitlines()]
    (tmp_path / "pisc" / "image" / "00001.jpg").write_bytes(b"\xff\xd8\xff broken")  # both samples use it
    records.append(dict(records[0], id="bad-label", label=6))
    records.append(dict(records[0], id="one-box", boxes=records[0]["boxes"][:1]))
    lines = [json.dumps(r) for r in records] + ["{oops"]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "5 records, 5 bad" in out
    assert (
        "label 6 is not a class of relation (0..5)" in out
        and "image: not a readable image" in out
        and "not valid JSON" in out
    )
    assert main(["validate", str(path), "--max-bad-fraction", "1.0"]) == 0
    # the coarse task has 3 classes: label 5 is out of range there
    assert main(["validate", str(pisc_jsonl), "--task-option", "relation.level=coarse"]) == 1


def test_stats_names_classes(pisc_jsonl, capsys):
    assert main(["stats", str(pisc_jsonl)]) == 0
    out = capsys.readouterr().out
    assert "relation: 2 samples" in out and "family=1" in out and "no_relation=1" in out and "160x120=1" in out
    assert main(["stats", str(pisc_jsonl), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)["tasks"]["relation"]
    assert stats["classes"] == {"family": 1, "no_relation": 1} and stats["boxes_per_sample"] == {"2": 2}


def test_synth_calls_the_generator(monkeypatch, tmp_path, capsys):
    calls = []

    def fake(out_dir, n, seed):
        calls.append((out_dir, n, seed))
        return {"out": str(out_dir), "n": n}

    monkeypatch.setattr(data_commands, "generate", fake)
    assert main(["synth", "--out", str(tmp_path), "--n", "3", "--seed", "7"]) == 0
    assert calls == [(tmp_path, 3, 7)]
    assert json.loads(capsys.readouterr().out) == {"out": str(tmp_path), "n": 3}


def test_cli_dispatch_and_help(pisc_jsonl, capsys):
    assert cli.main(["data", "stats", str(pisc_jsonl)]) == 0
    assert main([]) == 2
    assert "prepare" in capsys.readouterr().out
