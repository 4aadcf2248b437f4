"""Untrusted files: nothing unpickles them, and paths in annotation files stay inside the dataset root.

- A malicious pickle (its __reduce__ would create a marker file) planted as a checkpoint's training_state.pt is
  refused by --resume, with valid checksums (torch.load(weights_only=True) refuses it) or stale ones (the
  checksum refuses it first); the marker is never created. Weights load only from safetensors.
- No source file calls pickle.load(s), torch.load without weights_only=True, np.load with allow_pickle=True,
  or the like (checked on the syntax tree, so a call split over lines is seen too).
- `../../etc/passwd`, an absolute path, or a symlink to a file outside the root in a JSONL record: a counted skip
  (policy skip) or a DataError (policy error), through the adapter, the dataset and a training run.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from socialfusion.models.checkpoint import CheckpointError

REPO = Path(__file__).resolve().parents[2]
SOURCE_DIRS = [REPO / "src", REPO / "benchmarks"]  # what ships or runs; tests unpickle their own payloads on purpose


class _Payload:
    """Unpickling this calls open(marker, "w"): the file appearing means the pickle was executed."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


@pytest.fixture(scope="module")
def run_with_checkpoint(tmp_path_factory, synth_root):
    """A real run of 1 step (checkpoints/last holds a genuine training state) on the synthetic benchmark."""
    from socialfusion.config import load_config
    from socialfusion.train.loop import train
    from tests.conftest import synth_overrides

    base = tmp_path_factory.mktemp("untrusted")
    config = load_config("tiny", [*synth_overrides(synth_root, base / "cache"), "train.steps=2", "train.save_every=1"])
    train(config, base / "run", progress=False, stop_after=1)
    return config, base / "run"


def _plant(run: Path, tmp_path: Path, how: str) -> tuple[Path, Path]:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    marker = tmp_path / "PWNED"
    state = copy / "checkpoints" / "last" / "training_state.pt"
    payload = {"step": _Payload(marker), "optimizer": {}, "scheduler": {}}
    if how == "torch.save":
        torch.save(payload, state)  # the zip format torch.load expects, with a malicious data.pkl
    else:
        state.write_bytes(pickle.dumps(payload, protocol=2))  # a bare legacy pickle
    return copy, marker


@pytest.mark.parametrize("how", ["torch.save", "raw pickle"])
@pytest.mark.parametrize("checksums", ["updated by the attacker", "stale"])
def test_resume_refuses_a_malicious_pickle_and_never_runs_it(run_with_checkpoint, tmp_path, how, checksums):
    from socialfusion.train.loop import train

    config, run = run_with_checkpoint
    copy, marker = _plant(run, tmp_path, how)
    last = copy / "checkpoints" / "last"
    if checksums == "updated by the attacker":
        sums = json.loads((last / "checksums.json").read_text())
        sums["training_state.pt"] = hashlib.sha256((last / "training_state.pt").read_bytes()).hexdigest()
        (last / "checksums.json").write_text(json.dumps(sums))
        expected = pickle.UnpicklingError  # torch.load(weights_only=True): "Weights only load failed"
    else:
        expected = CheckpointError
    with pytest.raises(expected) as err:
        train(config, copy, resume=True, progress=False)
    assert not marker.exists(), "the malicious pickle was executed"
    text = str(err.value)
    assert "training_state.pt" in text or "Weights only load failed" in text or "weights_only" in text, text
    # the payload is live: a plain unpickler would have run it (this is what weights_only=True prevents)
    if how == "raw pickle":
        pickle.loads((last / "training_state.pt").read_bytes())
        assert marker.exists()


def test_weights_load_only_from_safetensors(run_with_checkpoint, tmp_path):
    """A pickle renamed trainable.safetensors (checksum updated) is refused, not unpickled."""
    from socialfusion.models.checkpoint import load_model

    _, run = run_with_checkpoint
    last = tmp_path / "last"
    shutil.copytree(run / "checkpoints" / "last", last)
    marker = tmp_path / "PWNED"
    (last / "trainable.safetensors").write_bytes(pickle.dumps({"w": _Payload(marker)}))
    sums = json.loads((last / "checksums.json").read_text())
    sums["trainable.safetensors"] = hashlib.sha256((last / "trainable.safetensors").read_bytes()).hexdigest()
    (last / "checksums.json").write_text(json.dumps(sums))
    with pytest.raises(CheckpointError, match="trainable.safetensors"):
        load_model(last)
    assert not marker.exists()


# ---- the source tree: no unpickling calls --------------------------------------------------------------------

PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal", "jsonpickle"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_calls(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for n in names:
                if n.split(".")[0] in PICKLE_MODULES - {"pickle"}:
                    found.append((node.lineno, f"import {n}"))
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_MODULES:
                for a in node.names:
                    if a.name in ("load", "loads", "Unpickler", "open"):
                        found.append((node.lineno, f"from {node.module} import {a.name}"))
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        head, _, tail = name.rpartition(".")
        if head.split(".")[-1] in PICKLE_MODULES and tail in ("load", "loads", "Unpickler", "open"):
            found.append((node.lineno, name))
        elif tail == "load" and head.split(".")[-1] == "torch":
            if not _is_true(_kw(node, "weights_only")):
                found.append((node.lineno, "torch.load without weights_only=True"))
        elif tail == "load" and head.split(".")[-1] in ("np", "numpy"):
            allow = _kw(node, "allow_pickle")  # numpy's default is False
            if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
                found.append((node.lineno, "np.load with allow_pickle not False"))
        elif name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load") or tail == "unsafe_load":
            loader = _kw(node, "Loader")
            if name != "yaml.load" or loader is None or "Safe" not in _dotted(loader):
                found.append((node.lineno, f"{name} without a safe loader"))
        elif name in ("eval", "exec") and node.args and not isinstance(node.args[0], ast.Constant):
            found.append((node.lineno, f"{name} of a computed string"))
    return found


def test_the_checker_sees_what_it_should():
    bad = """
import pickle, numpy as np, torch, yaml
from pickle import loads
pickle.load(f); pickle.loads(b); torch.load(p); torch.load(p, weights_only=False)
torch.load(
    p,
)
np.load(p, allow_pickle=True); yaml.load(s); yaml.unsafe_load(s)
"""
    good = """
import torch, numpy as np, yaml
torch.load(p, weights_only=True); torch.load(
    p, map_location="cpu", weights_only=True)
np.load(p); np.load(p, allow_pickle=False); yaml.safe_load(s); yaml.load(s, Loader=yaml.SafeLoader)
"""
    assert len(unsafe_calls(ast.parse(bad))) == 9, unsafe_calls(ast.parse(bad))
    assert unsafe_calls(ast.parse(good)) == []


def test_no_source_file_unpickles_anything():
    files = sorted(f for d in SOURCE_DIRS if d.is_dir() for f in d.rglob("*.py"))
    assert len(files) > 20
    problems = []
    for path in files:
        for line, what in unsafe_calls(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            problems.append(f"{path.relative_to(REPO)}:{line}: {what}")
    assert not problems, "\n".join(problems)
    text = "\n".join(p.read_text(encoding="utf-8") for p in files)
    assert "allow_pickle=True" not in text and "weights_only=False" not in text


# ---- paths that escape the dataset root ----------------------------------------------------------------------


@pytest.fixture()
def escaping_dataset(tmp_path):
    from PIL import Image

    outside = tmp_path / "outside"
    outside.mkdir()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(outside / "secret.png")
    root = tmp_path / "root"
    (root / "img").mkdir(parents=True)
    Image.new("RGB", (16, 16), (9, 9, 9)).save(root / "img" / "ok.png")
    (root / "img" / "link.png").symlink_to(outside / "secret.png")
    (root / "img" / "dirlink").symlink_to(outside, target_is_directory=True)
    hostile = {
        "dotdot": "../outside/secret.png",
        "deep-dotdot": "img/../../outside/secret.png",
        "etc-passwd": "../../../../../../../../etc/passwd",
        "absolute": str(outside / "secret.png"),
        "absolute-etc": "/etc/passwd",
        "symlink": "img/link.png",
        "symlinked-dir": "img/dirlink/secret.png",
    }
    records = [{"id": "good", "task": "expression", "image": "img/ok.png", "label": 1, "boxes": []}]
    records += [{"id": k, "task": "expression", "image": v, "label": 1, "boxes": []} for k, v in hostile.items()]
    for split in ("train", "val"):
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root, hostile


def test_escaping_paths_never_reach_an_image_loader(escaping_dataset):
    from socialfusion.core.schema import DataError
    from socialfusion.data.adapters import read_dataset
    from socialfusion.data.pipeline import SampleDataset
    from socialfusion.data.skips import SkipReport
    from socialfusion.tasks import build_task

    root, hostile = escaping_dataset
    report = SkipReport("skip")
    samples, _ = read_dataset("jsonl", root, "train", report=report)
    loaded = []

    def loader(sample):
        path = sample.image_path()  # what pixel_input and the feature cache do first
        loaded.append(path)
        return {"pixel_values": torch.zeros(3, 4, 4), "image_size": (16, 16)}

    ds = SampleDataset(samples, build_task("expression"), loader, report)
    items = [ds[i] for i in range(len(ds))]
    kept = [it["sample"].id for it in items if it is not None]
    assert kept == ["good"]
    assert all(root.resolve() in p.parents for p in loaded)
    assert report.total == len(hostile)  # every hostile record is a counted skip, at read time or at load time
    # under policy 'error' the first hostile record is a DataError naming the record or the file
    with pytest.raises(DataError, match="escapes the dataset root|train.jsonl"):
        strict = SkipReport("error")
        samples, _ = read_dataset("jsonl", root, "train", report=strict)
        ds = SampleDataset(samples, build_task("expression"), loader, strict)
        [ds[i] for i in range(len(ds))]


def test_escaping_paths_in_a_training_run_are_counted_skips(escaping_dataset, tmp_path):
    from socialfusion.config import TaskDataConfig, load_config, validate
    from socialfusion.train.loop import train

    root, hostile = escaping_dataset
    config = load_config(
        "tiny", [f"train.cache_dir={tmp_path / 'cache'}", "train.steps=2", "train.eval_every=2", "train.batch_size=8"]
    )
    config.data.tasks = [TaskDataConfig(task="expression", dataset="jsonl", root=str(root))]
    validate(config)
    summary = train(config, tmp_path / "run", progress=False)
    assert summary["step"] == 2
    assert summary["last_eval"]["expression"]["n"] == 1  # only the good image was ever scored
    text = json.dumps(summary["skips"])
    assert all(k in text or v in text for k, v in hostile.items()), text
    cached = list((tmp_path / "cache").rglob("*.safetensors"))
    assert len(cached) == 1, "features were computed for a file outside the dataset root"


# ---- the checkpoint layout: each tensor stored once ----------------------------------------------------------


def _checkpoint_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor in one checkpoint file by its dotted path (safetensors keys; nested keys of a torch file)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    out: dict[str, torch.Tensor] = {}

    def walk(node, prefix):
        if isinstance(node, torch.Tensor):
            out[prefix] = node
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, f"{prefix}.{i}")

    walk(torch.load(path, map_location="cpu", weights_only=True), "")
    return out


def test_a_checkpoint_stores_each_tensor_once(run_with_checkpoint):
    """No adapter/ copy of the LoRA weights: trainable.safetensors holds every trained tensor (load_model and
    merge-lora read it), and no tensor (by name, or by value under another name) is in two files."""
    _, run = run_with_checkpoint
    last = run / "checkpoints" / "last"
    assert not (last / "adapter").exists()
    files = [f for f in last.rglob("*") if f.is_file() and f.suffix in (".safetensors", ".pt", ".pth", ".bin")]
    assert {f.name for f in files} == {"trainable.safetensors", "training_state.pt"}
    weights = _checkpoint_tensors(last / "trainable.safetensors")
    assert any("lora_A" in n for n in weights) and any("lora_B" in n for n in weights)

    def short(name: str) -> str:  # the same tensor as PEFT or a wrapper would name it
        for prefix in ("llm.", "base_model.model."):
            name = name.removeprefix(prefix)
        return name.replace(".default.", ".")

    seen_names: dict[str, str] = {}
    seen_values: dict[tuple, str] = {}
    for f in files:
        for name, t in _checkpoint_tensors(f).items():
            key = short(name)
            assert seen_names.setdefault(key, f.name) == f.name, f"{name} is in {seen_names[key]} and {f.name}"
            if t.numel() > 1 and bool(t.ne(0).any()):  # zeros (and scalars) are equal by chance, not copies
                value = (
                    t.dtype,
                    tuple(t.shape),
                    hashlib.sha256(t.contiguous().view(-1).view(torch.uint8).numpy().tobytes()).hexdigest(),
                )
                assert seen_values.setdefault(value, f"{f.name}:{name}").startswith(f"{f.name}:"), (
                    f"{f.name}:{name} repeats {seen_values[value]}"
                )
