"""Pre-trained model store: each distinct pre-training is computed once per store, then reused.

An entry is keyed by a content hash of everything that determines the model (source datasets and
properties, sample, held-out exclusions, graph parameters, architecture, PT hyperparameters, seed,
code versions). Requests for the same key from many trials or processes serialise on a file lock: the
first trains, the others wait and load. Entries are written atomically with a checksum and loaded with
``torch.load(weights_only=True)``; a damaged entry is discarded and retrained. A crash while training
leaves no entry. The directory may sit on a filesystem shared by every node; or the store is an object-store
URI (``s3://bucket/pretrained``) and each node keeps a mirror of it, asking the store before it trains
(``_store_remote.py``: claims with heartbeats in place of a lock).
"""

from __future__ import annotations

import io
import time
from contextlib import nullcontext
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from tlsearch import __version__, remote
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
        self.shared = None
        if remote.is_remote(root):
            from tlsearch.training._store_remote import RemoteTier

            self.shared, root = RemoteTier(str(root)), remote.mirror(str(root))
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

    def _load_shared(self, key: str) -> StoreEntry | None:
        """The entry from the object store (verified like a local one; a damaged one is removed there)."""
        if self.shared is None or not self.shared.fetch(key, self.path(key)):
            return None
        found = self.load(key)
        if found is None:
            self.shared.discard(key)
        return found

    def get_or_train(self, material: dict[str, Any], train: TrainFn) -> StoreEntry:
        key = self.key(material)
        found = self.load(key) or self._load_shared(key)
        if found is not None:
            return found
        self.root.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with FileLock(str(self.path(key)) + ".lock"):
            found = self.load(key) or self._load_shared(key)
            if found is None and self.shared is not None and self.shared.wait_or_claim(key, self.path(key)):
                found = self.load(key)  # another node's entry, now here
                if found is None:  # damaged on the store: remove it there; train it here
                    self.shared.discard(key)
            waited = time.perf_counter() - t0
            if found is not None:  # another process (or node) trained it while we waited
                found.wait_seconds = waited
                return found
            with self.shared.holding(key) if self.shared is not None else nullcontext():
                t1 = time.perf_counter()
                state, meta = train()
                meta = {**meta, "pt_seconds": round(time.perf_counter() - t1, 3), "material": material,
                        "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "versions": self.versions()}
                buf = io.BytesIO()
                torch.save({k: v.detach().cpu() for k, v in state.items()}, buf)
                write_checksummed(self.path(key), buf.getvalue(), {"format": FORMAT, "key": key, "meta": meta})
                if self.shared is not None:
                    self.shared.publish(key, self.path(key))
        return StoreEntry(key, self.path(key), state, meta, hit=False, wait_seconds=waited)
