import importlib.util
import os
import sys
from pathlib import Path

# an accidental download must fail loudly
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))

PRECISIONS = ("fp32", "bf16")
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def benchmark_script(name: str):
    """benchmarks/<name>.py as a module, with the imports its command line has: benchmarks/ (the shared `harness`
    package) on sys.path."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.append(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pytest_configure(config):
    # the bf16 variants run on every CPU; where bf16 is emulated, runtime.autocast says (once) that it is slow
    config.addinivalue_line(
        "filterwarnings", "ignore:precision bf16 was asked for on a CPU without native bf16:RuntimeWarning"
    )
    config.addinivalue_line(
        "markers", "precision: runs in fp32 and in bf16 (the `precision` fixture); `-m precision` selects them"
    )


def pytest_collection_modifyitems(items):
    for item in items:
        if "precision" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.precision)


@pytest.fixture(params=PRECISIONS)
def precision(request) -> str:
    """A test that takes this runs twice, in fp32 and in bf16, on every machine: where the CPU has no native bf16,
    bf16 is emulated (slower, the same rounding to 8 significant bits), so such a CPU checks what a bf16 one
    computes. Its tolerances: `socialfusion.numerics.tolerance(precision)`."""
    return request.param


def as_served(result: dict) -> dict:
    """A Python API result's task answers as the HTTP service sends them (its rounding, through JSON)."""
    import json

    from socialfusion.api import result_to_json

    return json.loads(json.dumps(result_to_json(result, heatmap="list", decimals=4)["tasks"]))


def in_precision(sf, precision: str):
    """The same `SocialFusion` model computing in `precision` (its torch threads left as they are)."""
    from socialfusion.api import SocialFusion

    return SocialFusion(
        sf.model, sf.config, device=sf.device, precision=precision, name=sf.name, card=sf.card, threads=None
    )


def computing_in(precision: str):
    """What the library runs under for `precision` on the CPU (bf16 autocast, or nothing for fp32)."""
    from socialfusion.runtime import autocast

    return autocast(torch.device("cpu"), precision)


@pytest.fixture(scope="module")
def one_torch_thread():
    """For modules of tiny-model calls: they gain nothing from intra-op threads, and on a busy 2-core machine the
    threads spin against each other. Use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_config():
    from socialfusion.config import load_config

    return load_config("tiny")


@pytest.fixture()
def tiny_model(tiny_config):
    from socialfusion.models.socialfusion import SocialFusionModel

    return SocialFusionModel(tiny_config.model)


def make_batch(task: str, b: int = 3, seed: int = 0) -> dict:
    """A random batch in the documented dict format for the tiny preset (32 px images)."""
    g = torch.Generator().manual_seed(seed)
    batch = {
        "task": task,
        "ids": [f"s{i}" for i in range(b)],
        "pixel_values": torch.randn(b, 3, 32, 32, generator=g),
        "boxes": torch.tensor([[[0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 0.9, 0.9]]] * b),
        "box_roles": torch.tensor([[0, 1]] * b),
    }
    n_classes = {"lam": 2, "expression": 8, "gesture": 34, "relation": 6}
    if task == "gaze":
        from socialfusion.tasks.gaze import gaze_target

        batch["gaze_target"] = torch.stack([gaze_target([(0.2 + 0.2 * i, 0.7)]) for i in range(b)])
        batch["inout"] = torch.tensor([1, 0, 1][:b] + [1] * max(0, b - 3))
    else:
        batch["labels"] = torch.randint(0, n_classes[task], (b,), generator=g)
    return batch


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """A small synthetic benchmark in the five official layouts, generated once per test session."""
    from socialfusion.data.synth import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, n=24, seed=0)
    return root


def synth_overrides(root, cache_dir) -> list[str]:
    """Point the tiny preset's five tasks at a synthetic benchmark and a private feature cache."""
    dirs = ["ego4d_lam", "affectnet", "hagrid", "pisc", "gazefollow_extended"]
    return [f"data.tasks.{i}.root={root / d}" for i, d in enumerate(dirs)] + [f"train.cache_dir={cache_dir}"]
