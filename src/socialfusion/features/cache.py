"""The feature cache: a frozen encoder's features for an image never change, so compute them once.

Entries are keyed by the image file's content hash under a directory named by the encoder's identity
(weights, preprocessing, layer): any change to those is a different directory, never a stale hit. Each entry is
one safetensors file written to a temporary name and renamed, so concurrent writers (several ranks) are safe and
a reader never sees half a file; an unreadable entry is deleted, recomputed and counted. Safetensors does not
checksum tensor bytes, so each entry's metadata holds the sha256 of its tensors, checked on every read (an entry
whose tensors no longer match it is corrupt; entries written before this hash existed are read as before).
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

from ..data.schema import Sample
from ..hashing import file_sha256

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
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class CorruptEntry(ValueError):
    pass


def _read_entry(entry: Path) -> tuple[torch.Tensor, tuple[int, int]]:
    with safe_open(str(entry), framework="pt") as f:
        recorded = (f.metadata() or {}).get("sha256")
        feats, size = f.get_tensor("features"), f.get_tensor("image_size")
    if recorded is not None and _content_hash(feats, size) != recorded:  # None: written before content hashes
        raise CorruptEntry("content hash mismatch")
    return feats, tuple(int(v) for v in size.tolist())


class FeatureCache:
    def __init__(self, root: str | Path, encoder):
        self.encoder = encoder
        self.dir = Path(root) / encoder_fingerprint(encoder)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "encoder.json").write_text(json.dumps(encoder.identity(), indent=2))
        self._hashes: dict[tuple, str] = {}
        self.stats = {"hits": 0, "misses": 0, "corrupt_recomputed": 0}

    def _key(self, path: Path) -> str:
        st = path.stat()
        memo = (str(path), st.st_size, st.st_mtime_ns)
        if memo not in self._hashes:
            self._hashes[memo] = file_hash(path)
        return self._hashes[memo]

    def _entry(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.safetensors"

    def get(self, path: Path) -> tuple[torch.Tensor, tuple[int, int]] | None:
        entry = self._entry(self._key(path))
        if not entry.exists():
            return None
        try:
            feats, size = _read_entry(entry)
        except (SafetensorError, OSError, KeyError, ValueError, RuntimeError) as err:
            log.warning("%s: corrupt feature cache entry (%s: %s); deleted, the features are recomputed", entry, type(err).__name__, err)
            entry.unlink(missing_ok=True)
            self.stats["corrupt_recomputed"] += 1
            return None
        self.stats["hits"] += 1
        return feats, size

    def put(self, path: Path, features: torch.Tensor, image_size: tuple[int, int]) -> None:
        entry = self._entry(self._key(path))
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=entry.parent)
        os.close(fd)
        try:
            tensors = {"features": features.detach().cpu().contiguous(), "image_size": torch.tensor(image_size)}
            save_file(tensors, tmp, metadata={"sha256": _content_hash(tensors["features"], tensors["image_size"])})
            os.replace(tmp, entry)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @torch.no_grad()
    def compute(self, paths: list[Path]) -> list[tuple[torch.Tensor, tuple[int, int]]]:
        from ..data.images import load_image

        images = [load_image(p) for p in paths]
        device = next(self.encoder.parameters()).device
        feats = self.encoder(self.encoder.preprocess(images).to(device)).float().cpu()
        out = []
        for p, img, f in zip(paths, images, feats):
            self.put(p, f, img.size)
            out.append((f, img.size))
        self.stats["misses"] += len(paths)
        return out

    def warm(self, samples: list[Sample], report, batch_size: int = 16, desc: str = "caching features", progress: bool = True) -> None:
        """Compute every missing entry for these samples (unreadable images become counted skips)."""
        from tqdm.auto import tqdm

        from ..data.schema import DataError

        todo, seen = [], set()
        for s in samples:
            try:
                p = s.image_path()
            except DataError:  # a path escaping the dataset root: counted (or raised) when a sample asks for it
                continue
            if p in seen:
                continue
            seen.add(p)
            try:
                if not self._entry(self._key(p)).exists():
                    todo.append(p)
            except OSError as err:
                report.skip(f"{s.image} (sample {s.id})", f"unreadable image: {err.strerror}")
        for i in tqdm(range(0, len(todo), batch_size), desc=desc, disable=not (todo and progress), leave=False):
            chunk = todo[i : i + batch_size]
            try:
                self.compute(chunk)
            except DataError:
                for p in chunk:  # find the bad file(s); the rest still get cached
                    try:
                        self.compute([p])
                    except DataError:
                        pass  # reported as a counted skip when a sample asks for it

    def input_fn(self):
        def fn(sample: Sample) -> dict:
            path = sample.image_path()
            try:
                hit = self.get(path)
            except OSError as err:
                from ..data.schema import DataError

                raise DataError(f"{path}: {err.strerror}") from err
            feats, size = hit if hit is not None else self.compute([path])[0]
            return {"features": feats, "image_size": size}

        return fn
