"""The feature cache: a frozen encoder's features for an image never change, so compute them once.

Entries are keyed by the image file's content hash under a directory named by the encoder's identity
(weights, preprocessing, layer) and the dtype the entries are stored in (the run's compute dtype: bf16 when its
precision resolves to bf16, fp32 otherwise): any change to those is a different directory, never a stale hit
and never a mix of fp32 and bf16 entries. Each entry is one safetensors file written to a temporary name and
renamed, so concurrent writers (several ranks) are safe and a reader never sees half a file; an unreadable entry
is deleted, recomputed and counted. Safetensors does not checksum tensor bytes, so each entry's metadata holds
the sha256 of its tensors, checked the first time a FeatureCache reads the entry (once per entry per run; an
entry whose tensors no longer match it is corrupt; entries written before this hash existed are read as before).
`warm` hashes and decodes images in DataLoader worker processes while the encoder runs in this one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..core.schema import DataError, Sample
from ..data.pipeline import pixel_input
from ..hashing import file_sha256
from ..runtime import autocast

log = logging.getLogger("socialfusion.features")


def encoder_fingerprint(encoder) -> str:
    """Hash of the encoder's identity and its weights (random-init encoders differ by seed)."""
    h = hashlib.sha256(json.dumps(encoder.identity(), sort_keys=True).encode())
    for name, p in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes() if p.numel() else b"")
    return h.hexdigest()[:20]


file_hash = file_sha256  # the cache key of an image is its content hash


def _content_hash(features: torch.Tensor, image_size: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in (features, image_size):
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b"")  # the buffer itself, no copy
    return h.hexdigest()


class CorruptEntry(ValueError):
    pass


DTYPES = {torch.float32: "fp32", torch.bfloat16: "bf16"}


def _read_entry(entry: Path, verify: bool) -> tuple[torch.Tensor, tuple[int, int]]:
    with safe_open(str(entry), framework="pt") as f:
        recorded = (f.metadata() or {}).get("sha256")
        feats, size = f.get_tensor("features"), f.get_tensor("image_size")
    if (
        verify and recorded is not None and _content_hash(feats, size) != recorded
    ):  # None: written before content hashes
        raise CorruptEntry("content hash mismatch")
    return feats, tuple(int(v) for v in size.tolist())


class _HashAndDecode(torch.utils.data.Dataset):
    """One image per item, for `warm`'s worker processes: its content hash (the cache key) and, only when the
    entry is missing, its pixels through the same `pixel_input` the model's pixel path uses (so cached and
    computed-on-the-fly features come from identical pixels). Problems come back as values, never raised, so
    one bad file does not stop the loader."""

    def __init__(self, samples: list[Sample], cache_dir: Path, to_pixels):
        self.samples, self.cache_dir, self.to_pixels = samples, cache_dir, to_pixels

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        sample = self.samples[i]
        path = sample.image_path()
        try:
            st = path.stat()
            key = file_hash(path)
        except OSError as err:
            return {"index": i, "unreadable": err.strerror or str(err)}
        item = {"index": i, "memo": (str(path), st.st_size, st.st_mtime_ns), "key": key}
        if (self.cache_dir / key[:2] / f"{key}.safetensors").exists():
            return item
        try:
            return {**item, **self.to_pixels(sample)}
        except (DataError, OSError):
            return item  # counted as a skip when a sample asks for this image


def _as_list(items: list) -> list:
    return items


class FeatureCache:
    def __init__(self, root: str | Path, encoder, dtype: torch.dtype = torch.float32, num_workers: int = 0):
        if dtype not in DTYPES:
            raise ValueError(f"feature cache entries are fp32 or bf16, not {dtype}")
        self.root = Path(root)
        self.encoder = encoder
        self.dtype = dtype
        self.num_workers = num_workers
        self.dir = self.root / f"{encoder_fingerprint(encoder)}-{DTYPES[dtype]}"
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "encoder.json").write_text(json.dumps({**encoder.identity(), "dtype": DTYPES[dtype]}, indent=2))
        self._hashes: dict[tuple, str] = {}
        self._verified: set[str] = set()  # entries whose content hash this instance has checked
        self.stats = {"hits": 0, "misses": 0, "corrupt_recomputed": 0, "verified": 0}

    def _key(self, path: Path) -> str:
        st = path.stat()
        memo = (str(path), st.st_size, st.st_mtime_ns)
        if memo not in self._hashes:
            self._hashes[memo] = file_hash(path)
        return self._hashes[memo]

    def _entry(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.safetensors"

    def read(self, key: str) -> tuple[torch.Tensor, tuple[int, int]] | None:
        """The entry of an image content hash; None when absent or corrupt (then deleted and counted)."""
        entry = self._entry(key)
        if not entry.exists():
            return None
        verify = key not in self._verified
        try:
            feats, size = _read_entry(entry, verify)
        except (SafetensorError, OSError, KeyError, ValueError, RuntimeError) as err:
            log.warning(
                "%s: corrupt feature cache entry (%s: %s); deleted, the features are recomputed",
                entry,
                type(err).__name__,
                err,
            )
            entry.unlink(missing_ok=True)
            self.stats["corrupt_recomputed"] += 1
            return None
        if verify:
            self._verified.add(key)
            self.stats["verified"] += 1
        self.stats["hits"] += 1
        return feats, size

    def get(self, path: Path) -> tuple[torch.Tensor, tuple[int, int]] | None:
        return self.read(self._key(path))

    def put(self, path: Path, features: torch.Tensor, image_size: tuple[int, int], key: str | None = None) -> None:
        entry = self._entry(key or self._key(path))
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=entry.parent)
        os.close(fd)
        try:
            tensors = {
                "features": features.detach().to("cpu", self.dtype).contiguous(),
                "image_size": torch.tensor(image_size),
            }
            save_file(tensors, tmp, metadata={"sha256": _content_hash(tensors["features"], tensors["image_size"])})
            os.replace(tmp, entry)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @torch.no_grad()
    def _encode(self, pixels: torch.Tensor) -> torch.Tensor:
        device = next(self.encoder.parameters()).device
        with autocast(device, DTYPES[self.dtype]):
            return self.encoder(pixels.to(device)).to("cpu", self.dtype)

    def compute(self, samples: list[Sample]) -> list[tuple[torch.Tensor, tuple[int, int]]]:
        to_pixels = pixel_input(self.encoder)
        items = [to_pixels(s) for s in samples]
        feats = self._encode(torch.stack([it["pixel_values"] for it in items]))
        out = []
        for s, it, f in zip(samples, items, feats):
            size = tuple(int(v) for v in it["image_size"])
            self.put(s.image_path(), f, size)
            out.append((f, size))
        self.stats["misses"] += len(samples)
        return out

    def warm(
        self, samples: list[Sample], report, batch_size: int = 16, desc: str = "caching features", progress: bool = True
    ) -> None:
        """Compute every missing entry for these samples: `num_workers` DataLoader workers hash and decode the
        images, this process runs the encoder (unreadable images become counted skips; undecodable ones are
        counted when a sample asks for them)."""
        from tqdm.auto import tqdm

        unique, seen = [], set()
        for s in samples:
            try:
                p = s.image_path()
            except DataError:  # a path escaping the dataset root: counted (or raised) when a sample asks for it
                continue
            if p not in seen:
                seen.add(p)
                unique.append(s)
        if not unique:
            return
        dataset = _HashAndDecode(unique, self.dir, pixel_input(self.encoder))
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, num_workers=self.num_workers, collate_fn=_as_list
        )
        for items in tqdm(loader, desc=desc, disable=not progress, leave=False):
            todo = []
            for it in items:
                s = unique[it["index"]]
                if "unreadable" in it:
                    report.skip(f"{s.image} (sample {s.id})", f"unreadable image: {it['unreadable']}")
                    continue
                self._hashes[it["memo"]] = it["key"]
                if "pixel_values" in it:
                    todo.append(it)
            if not todo:
                continue
            feats = self._encode(torch.stack([it["pixel_values"] for it in todo]))
            for it, f in zip(todo, feats):
                self.put(unique[it["index"]].image_path(), f, tuple(int(v) for v in it["image_size"]), key=it["key"])
            self.stats["misses"] += len(todo)

    def input_fn(self):
        def fn(sample: Sample) -> dict:
            path = sample.image_path()
            try:
                hit = self.get(path)
            except OSError as err:
                raise DataError(f"{path}: {err.strerror}") from err
            feats, size = hit if hit is not None else self.compute([sample])[0]
            return {"features": feats, "image_size": size}

        return fn
