"""Pre-trained model store: each distinct pre-training is computed once per store, then reused.

An entry is keyed by a content hash of everything that determines the model (source datasets and
properties, sample, held-out exclusions, graph parameters, architecture, PT hyperparameters, seed,
code versions). Requests for the same key from many trials or processes serialise on a file lock: the
first trains, the others wait and load. Entries are written atomically with a checksum and loaded with
``torch.load(weights_only=True)``; a damaged entry is discarded and retrained. A crash while training
leaves no entry. The directory may sit on a filesystem shared by every node.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from tlsearch import __version__
from tlsearch._io import read_checksummed, stable_hash, write_checksummed
from tlsearch.errors import CorruptEntryError
from tlsearch.paths import cache_root

FORMAT = "tlsearch-pretrained-v1"


@dataclass
class StoreEntry:
    key: str
    path: Path
    state: dict[str, torch.Tensor]
    meta: dict[str, Any]
    hit: bool             # True when this request reused an existing entry
    wait_seconds: float   # time spent waiting for another process's training


TrainFn = Callable[[], tuple[dict[str, torch.Tensor], dict[str, Any]]]


class PretrainStore:
    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_root() / "pretrained"

    @staticmethod
    def versions() -> dict[str, str]:
        """The code versions a key includes (an entry made by other versions has another key)."""
        import alignn

        return {"tlsearch": __version__, "alignn": getattr(alignn, "__version__", "?"),
                "torch": torch.__version__.split("+")[0]}

    @staticmethod
    def key(material: dict[str, Any]) -> str:
        return stable_hash({**material, **PretrainStore.versions(), "format": FORMAT})

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def load(self, key: str) -> StoreEntry | None:
        path = self.path(key)
        if not path.exists():
            return None
        try:
            header, payload = read_checksummed(path)
            if header.get("format") != FORMAT:
                raise CorruptEntryError(f"{path}: format {header.get('format')!r}")
            state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        except Exception:  # damaged, foreign or hostile payload: weights_only loading raises many types
            # (UnpicklingError, IndexError, ...), and such an entry is discarded and retrained, never trusted
            path.unlink(missing_ok=True)
            return None
        return StoreEntry(key, path, state, header["meta"], hit=True, wait_seconds=0.0)

    def get_or_train(self, material: dict[str, Any], train: TrainFn) -> StoreEntry:
        key = self.key(material)
        found = self.load(key)
        if found is not None:
            return found
        self.root.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with FileLock(str(self.path(key)) + ".lock"):
            waited = time.perf_counter() - t0
            found = self.load(key)
            if found is not None:  # another process trained it while we waited
                found.wait_seconds = waited
                return found
            t1 = time.perf_counter()
            state, meta = train()
            meta = {**meta, "pt_seconds": round(time.perf_counter() - t1, 3), "material": material,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "versions": self.versions()}
            buf = io.BytesIO()
            torch.save({k: v.detach().cpu() for k, v in state.items()}, buf)
            write_checksummed(self.path(key), buf.getvalue(), {"format": FORMAT, "key": key, "meta": meta})
        return StoreEntry(key, self.path(key), state, meta, hit=False, wait_seconds=waited)
