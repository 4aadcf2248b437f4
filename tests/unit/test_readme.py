"""The README's examples run as written: its own-data config loads, its JSONL record reads, its links resolve.

A README example that no test reads drifts from the code unnoticed; these tests read the blocks out of README.md
itself, so editing the example is editing what is tested.
"""

import json
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + len(heading) + 2)
    return text[start : end if end >= 0 else None]


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def _own_data() -> str:
    return _section(README.read_text(encoding="utf-8"), "## Training on your own data")


def test_the_readme_own_data_config_loads_with_its_roots_pointed_at_folders(tmp_path):
    from socialfusion.config import load_config
    from socialfusion.tasks import TASK_NAMES

    [block] = _blocks(_own_data(), "yaml")
    data = yaml.safe_load(block)
    named = [t["task"] for t in data["data"]["tasks"]]
    assert named and set(named) <= set(TASK_NAMES) and len(set(named)) == len(named), named
    roots = {}
    for entry in data["data"]["tasks"]:  # the example's /data/... roots, moved under tmp_path
        roots[entry["task"]] = tmp_path / "data" / entry["task"]
        roots[entry["task"]].mkdir(parents=True)
        entry["root"] = str(roots[entry["task"]])
    path = tmp_path / "my.yaml"
    path.write_text(yaml.safe_dump(data))

    config = load_config(path)
    assert [td.task for td in config.data.tasks] == named  # the list replaces the preset's, in the file's order
    assert {td.task: Path(td.root) for td in config.data.tasks} == roots
    base = load_config(data["base"])  # everything the file does not set comes from the preset it extends
    assert config.model == base.model and config.train.batch_size == base.train.batch_size
    assert config.train.steps == data["train"]["steps"] != base.train.steps
    by_task = {td.task: td for td in config.data.tasks}
    assert any(td.dataset == "jsonl" for td in by_task.values()), "the example should show a JSONL task"


def test_the_readme_jsonl_record_reads_through_the_adapter_of_its_task(tmp_path):
    """The README's JSONL record, written where its task's root says, reads back through the jsonl adapter."""
    from PIL import Image

    from socialfusion.data.adapters import read_dataset

    section = _own_data()
    [record_line] = [line for b in _blocks(section, "json") for line in b.splitlines() if line.strip()]
    record = json.loads(record_line)
    [block] = _blocks(section, "yaml")
    [entry] = [t for t in yaml.safe_load(block)["data"]["tasks"] if t.get("dataset") == "jsonl"]
    assert record["task"] == entry["task"]
    root = tmp_path / "root"
    (root / record["image"]).parent.mkdir(parents=True)
    Image.new("RGB", (64, 48), (90, 120, 150)).save(root / record["image"])
    (root / "train.jsonl").write_text(record_line + "\n")

    samples, report = read_dataset("jsonl", root, "train")
    assert sum(report.counts.values()) == 0, report.counts
    [sample] = samples
    assert (sample.task, sample.label, sample.image) == (record["task"], record["label"], record["image"])
    assert [(list(b.xyxy), b.role) for b in sample.boxes] == [(b["xyxy"], b["role"]) for b in record["boxes"]]


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation other than - and _ dropped, spaces to hyphens."""
    heads = [m.group(1) for m in re.finditer(r"^#{1,6} (.+)$", re.sub(r"```.*?```", "", markdown, flags=re.S), re.M)]
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_points_at_a_file_in_the_repo(doc):
    text = doc.read_text(encoding="utf-8")
    broken = []
    for target in LINK.findall(re.sub(r"```.*?```", "", text, flags=re.S)):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists() or REPO not in file.parents:
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text(encoding="utf-8")):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{doc.name}: {broken}"


def test_the_readme_top_commands_are_make_targets():
    first_block = _blocks(README.read_text(encoding="utf-8"), "bash")[0]
    targets = re.findall(r"^make (\w+)", first_block, re.M)
    assert targets == ["demo", "test"]
    makefile = (REPO / "Makefile").read_text()
    for target in targets:
        assert re.search(rf"^{target}:", makefile, re.M), target
