"""The feature cache: a frozen encoder's features for an image never change, so compute them once.

Entries are keyed by the image file's content hash under a directory named by the encoder's identity
(weights, preprocessing, layer): any change to those is a different directory, never a stale hit. Each entry is
one safetensors file written to a temporary name and renamed, so concurrent writers (several ranks) are safe and
a reader never sees half a file; an unreadable entry is deleted, recomputed and counted.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..data.schema import Sample


def encoder_fingerprint(encoder) -> str:
    """Hash of the encoder's identity and its weights (random-init encoders differ by seed)."""
    h = hashlib.sha256(json.dumps(encoder.identity(), sort_keys=True).encode())
    for name, p in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes() if p.numel() else b"")
    return h.hexdigest()[:20]


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
            data = load_file(str(entry))
            feats, size = data["features"], tuple(int(v) for v in data["image_size"].tolist())
        except (SafetensorError, OSError, KeyError, ValueError, RuntimeError):
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
            save_file(tensors, tmp)
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

    def warm(self, samples: list[Sample], report, batch_size: int = 16, desc: str = "caching features") -> None:
        """Compute every missing entry for these samples (unreadable images become counted skips)."""
        from tqdm.auto import tqdm

        from ..data.schema import DataError

        todo, seen = [], set()
        for s in samples:
            p = s.image_path()
            if p in seen:
                continue
            seen.add(p)
            try:
                if not self._entry(self._key(p)).exists():
                    todo.append(p)
            except OSError as err:
                report.skip(f"{s.image} (sample {s.id})", f"unreadable image: {err.strerror}")
        for i in tqdm(range(0, len(todo), batch_size), desc=desc, disable=not todo, leave=False):
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
