import os

# an accidental download must fail loudly
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


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
