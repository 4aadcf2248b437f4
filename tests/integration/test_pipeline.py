"""The input pipeline (`data.pipeline.BatchLoader`): batches built in DataLoader worker processes are the batches
built in-process, in plan order; skips recorded in a worker reach the main process's report (counts, examples, the
`error` policy); training with one worker gives exactly the losses, evaluations and weights of training with none,
also across a resume; `num_workers` is validated and "auto" resolves to min(4, cpus - 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from socialfusion.config import ConfigError, load_config, resolve_num_workers
from socialfusion.core.images import ImageError, load_image, load_image_reduced
from socialfusion.core.schema import Box, DataError, Sample
from socialfusion.data.pipeline import BatchLoader, SampleDataset
from socialfusion.data.skips import SkipReport
from socialfusion.tasks import build_task
from tests.conftest import synth_overrides

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _Pixels:
    """A deterministic stand-in for the pixel input: a tensor that depends on the sample id; ids listed in `bad`
    are unusable images (an ImageError, as a truncated file gives)."""

    def __init__(self, bad: set[str]):
        self.bad = bad

    def __call__(self, sample: Sample) -> dict:
        if sample.id in self.bad:
            raise ImageError(f"{sample.id}.jpg", "cannot decode image", "truncated")
        g = torch.Generator().manual_seed(int(sample.id.split("-")[1]))
        return {"pixel_values": torch.randn(3, 8, 8, generator=g), "image_size": (64, 48)}


def _datasets(policy: str, bad: set[str]) -> tuple[dict[str, SampleDataset], SkipReport]:
    report = SkipReport(policy)
    out = {}
    for name, n_classes in (("expression", 8), ("lam", 2)):
        samples = [
            Sample(
                id=f"{name}-{i}",
                task=name,
                image=f"{name}-{i}.jpg",
                boxes=[Box((0.1, 0.1, 0.6, 0.7), 0)],
                label=i % n_classes,
            )
            for i in range(12)
        ]
        out[name] = SampleDataset(samples, build_task(name), _Pixels(bad), report)
    return out, report


PLAN = [
    ("expression", [3, 1, 4]),
    ("lam", [1, 5, 9, 2]),
    ("expression", [6, 5]),
    ("lam", [3]),
    ("expression", [5, 8, 9, 7]),
]
BAD = {"expression-5", "lam-3", "expression-9"}  # lam [3] is a batch of skips only


def _run(workers: int, policy: str = "skip"):
    datasets, report = _datasets(policy, BAD)
    with BatchLoader(datasets, workers=workers, prefetch_factor=2) as loader:
        first = list(loader.batches(PLAN))
        second = list(loader.batches(PLAN[:2]))  # a second pass reuses the persistent workers
    return first, second, report


def _same_batch(a, b):
    if a is None or b is None:
        return a is None and b is None
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a
    )


def test_workers_build_the_in_process_batches_in_plan_order_and_report_their_skips():
    state = torch.get_rng_state()
    serial, serial_again, serial_report = _run(0)
    parallel, parallel_again, parallel_report = _run(1)
    assert torch.equal(torch.get_rng_state(), state), (
        "a loader must not draw from torch's global RNG (resume restores it)"
    )
    assert [b and b["ids"] for b in serial] == [
        ["expression-3", "expression-1", "expression-4"],
        ["lam-1", "lam-5", "lam-9", "lam-2"],
        ["expression-6"],
        None,
        ["expression-8", "expression-7"],
    ]
    assert len(parallel) == len(serial) and all(_same_batch(a, b) for a, b in zip(serial, parallel))
    assert all(_same_batch(a, b) for a, b in zip(serial_again, parallel_again)) and len(parallel_again) == 2
    # every skip of both passes, once per time its sample was asked for, with the same examples in the same order
    assert parallel_report.to_dict() == serial_report.to_dict()
    assert parallel_report.total == 4 and parallel_report.counts == {"unusable image: cannot decode image": 4}
    assert parallel_report.examples["unusable image: cannot decode image"][0].startswith(
        "expression-5.jpg (sample expression-5)"
    )


@pytest.mark.parametrize("workers", [0, 1])
def test_the_error_policy_raises_in_the_main_process_before_the_batch_is_used(workers):
    datasets, _ = _datasets("error", BAD)
    used = []
    with BatchLoader(datasets, workers=workers) as loader:
        with pytest.raises(DataError, match=r"expression-5\.jpg \(sample expression-5\): .*cannot decode image"):
            for batch in loader.batches(PLAN):
                used.append(batch["ids"])
    assert used == [["expression-3", "expression-1", "expression-4"], ["lam-1", "lam-5", "lam-9", "lam-2"]]


def test_num_workers_auto_and_validation():
    assert [resolve_num_workers("auto", cpus) for cpus in (1, 2, 3, 5, 64)] == [0, 1, 2, 4, 4]
    assert resolve_num_workers(3, cpus=2) == 3  # an explicit count is taken as given
    assert load_config("tiny").train.num_workers == 0 and load_config("default").train.num_workers == "auto"
    assert load_config("tiny", ["train.num_workers=auto"]).train.num_workers == "auto"
    for bad, match in (
        ("train.num_workers=-1", "num_workers must be >= 0"),
        ("train.num_workers=many", "num_workers"),
        ("train.prefetch_factor=0", "prefetch_factor must be >= 1"),
    ):
        with pytest.raises(ConfigError, match=match):
            load_config("tiny", [bad])


def test_reduced_jpeg_decoding_keeps_the_full_size_and_stays_close_to_a_full_decode(tmp_path):
    from socialfusion.data.pipeline import PixelInput

    rng = np.random.default_rng(0)
    base = np.kron(rng.integers(0, 256, (27, 48, 3)), np.ones((40, 40, 1))).astype(np.uint8)  # 1920 x 1080 blocks
    noisy = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "hd.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the upright size is 1080 x 1920
    Image.fromarray(noisy).save(path, quality=90, exif=exif)
    image, size = load_image_reduced(path, 168)
    assert size == load_image(path).size == (1080, 1920)
    assert image.size == (270, 480)  # decoded at 1/4 scale (the smallest that keeps both sides >= 168), upright

    class Encoder:  # the encoder's preprocess: resize to a square, scale to [0, 1]
        image_size, wants_boxes = 168, False

        def preprocess(self, images):
            return torch.stack(
                [
                    torch.from_numpy(
                        np.asarray(im.resize((168, 168), Image.Resampling.BICUBIC), dtype=np.float32) / 255
                    ).permute(2, 0, 1)
                    for im in images
                ]
            )

    sample = Sample(id="x", task="expression", image="hd.jpg", root=str(tmp_path))
    reduced, full = PixelInput(Encoder())(sample), PixelInput(Encoder(), reduced=False)(sample)
    assert reduced["image_size"] == full["image_size"] == (1080, 1920)
    diff = (reduced["pixel_values"] - full["pixel_values"]).abs()
    assert diff.mean() < 2 / 255 and diff.max() < 24 / 255, (diff.mean() * 255, diff.max() * 255)


def test_predict_over_many_files_decodes_ahead_in_a_worker_with_the_same_results(tmp_path, capsys):
    from socialfusion.cli import main

    src = tmp_path / "imgs"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (48 + 4 * i, 64, 3), dtype=np.uint8)).save(src / f"{i}.jpg")
    (src / "3-broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    outs = {}
    for workers in ("0", "1"):
        argv = [
            "predict",
            "--ckpt",
            "tiny",
            "--dir",
            str(src),
            "--tasks",
            "lam,gaze",
            "--out",
            str(tmp_path / workers),
            "--batch-size",
            "2",
            "--workers",
            workers,
            "--no-progress",
        ]
        assert main(argv) == 0
        outs[workers] = (
            (tmp_path / workers / "predictions.jsonl").read_text(),
            json.loads((tmp_path / workers / "summary.json").read_text()),
        )
    (rows0, summary0), (rows1, summary1) = outs["0"], outs["1"]
    assert rows1 == rows0 and [json.loads(r)["image"].rsplit("/", 1)[-1] for r in rows1.splitlines()] == [
        f"{i}.jpg" for i in range(5)
    ]
    assert summary1["skipped_files"] == summary0["skipped_files"] and summary1["skipped"] == 1
    assert "not a readable image" in summary1["skipped_files"][0]["reason"]
    capsys.readouterr()
    assert (
        main(["predict", "--ckpt", "tiny", "--dir", str(src), "--out", str(tmp_path / "x"), "--workers", "some"]) == 2
    )
    assert "--workers must be a count" in capsys.readouterr().err


# ---- training: one worker gives exactly what no worker gives ------------------------------------------------


def _train(synth_root, tmp_path, name: str, workers: int, stop_after=None, resume=False):
    from socialfusion.train.loop import train

    overrides = [
        *synth_overrides(synth_root, tmp_path / "cache"),
        "train.feature_cache=off",
        f"train.num_workers={workers}",
        "train.steps=4",
        "train.grad_accum=2",
        "train.eval_every=2",
        "train.save_every=1",
        "train.log_every=1",
        *[f"data.tasks.{i}.max_eval_samples=6" for i in range(5)],
    ]
    config = load_config("tiny", overrides)
    summary = train(config, tmp_path / name, progress=False, stop_after=stop_after, resume=resume)
    rows = [json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
    return summary, rows


def _weights(run):
    return load_file(str(run / "checkpoints" / "last" / "trainable.safetensors"))


@pytest.mark.slow
def test_training_with_one_worker_matches_no_worker_exactly_also_across_a_resume(synth_root, tmp_path):
    s0, rows0 = _train(synth_root, tmp_path, "w0", 0)
    s1, rows1 = _train(synth_root, tmp_path, "w1", 1)
    losses0 = [(r["step"], r["loss"], r["tasks"]) for r in rows0 if "loss" in r]
    assert len(losses0) == 4 and losses0 == [(r["step"], r["loss"], r["tasks"]) for r in rows1 if "loss" in r]

    def untimed(rows):  # the evaluation records without their wall time, which differs
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows if "eval" in r]

    evals0 = untimed(rows0)
    assert len(evals0) == 2 and evals0 == untimed(rows1)
    assert s0["skips"] == s1["skips"] and rows0[-1] == rows1[-1]  # the logged skip report too
    w0, w1 = _weights(tmp_path / "w0"), _weights(tmp_path / "w1")
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)

    # stopped after step 1 and resumed with a worker: the batch plan starts at the restored step
    _train(synth_root, tmp_path, "resumed", 1, stop_after=1)
    s2, rows2 = _train(synth_root, tmp_path, "resumed", 1, resume=True)
    assert s2["step"] == 4
    assert [(r["step"], r["loss"]) for r in rows2 if "loss" in r] == [(s, loss) for s, loss, _ in losses0]
    w2 = _weights(tmp_path / "resumed")
    assert all(torch.equal(w0[k], w2[k]) for k in w0)
