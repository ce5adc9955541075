"""Pre-trained model store: each distinct pre-training is computed once per store, then reused.

An entry is keyed by a content hash of everything that determines the model (source datasets and
properties, sample, held-out exclusions, graph parameters, architecture, PT hyperparameters, seed,
code versions). Requests for the same key from many trials or processes serialise on a file lock: the
first trains, the others wait and load. Entries are written atomically with a checksum and loaded with
``torch.load(weights_only=True)``; a damaged entry is discarded and retrained. A crash while training
leaves no entry. While one trains, ``<key>.holder`` names it (host, pid, since when): a waiter logs it every
``TLSEARCH_PT_NOTE_S`` seconds (default 60) and gives up with :class:`PretrainWaitError` after
``TLSEARCH_PT_WAIT_S`` (default 0: as long as the holder lives; a dead holder's lock is released by the
kernel, so only a hung one makes a waiter wait).

The directory may sit on a filesystem shared by every node; or the store is an object-store URI
(``s3://bucket/pretrained``) and each node keeps a mirror of it, asking the store before it trains
(``tlsearch/_remote_tier.py``: claims with heartbeats in place of a lock).
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout

from tlsearch import __version__, remote
from tlsearch._io import read_checksummed, stable_hash, write_atomic, write_checksummed
from tlsearch.errors import CorruptEntryError, PretrainWaitError
from tlsearch.paths import cache_root

FORMAT = "tlsearch-pretrained-v1"
log = logging.getLogger(__name__)


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
            from tlsearch._remote_tier import RemoteTier

            self.shared, root = RemoteTier(str(root), ".pt"), remote.mirror(str(root))
        self.root = Path(root) if root is not None else cache_root() / "pretrained"
        self.wait_s = float(os.environ.get("TLSEARCH_PT_WAIT_S", "0"))
        self.note_s = float(os.environ.get("TLSEARCH_PT_NOTE_S", "60"))

    def holder(self, key: str) -> str:
        """Who is training ``key`` here, as its holder file says."""
        try:
            h = json.loads((self.root / f"{key}.holder").read_text())
            return f"{h['host']} pid {h['pid']}, training since {h['since']} ({time.time() - h['t']:.0f} s)"
        except (OSError, ValueError, KeyError):
            return "a process that has not said who it is"

    def _waited(self, key: str, t0: float) -> None:
        """Log who is awaited; raise PretrainWaitError past ``wait_s``."""
        waited = time.perf_counter() - t0
        who = self.holder(key) if self.shared is None else self.shared.holder_of(key)
        log.warning("PT model %s: waiting %.0f s for %s", key[:12], waited, who)
        if self.wait_s and waited >= self.wait_s:
            raise PretrainWaitError(f"PT model {key[:12]}: waited {waited:.0f} s (TLSEARCH_PT_WAIT_S={self.wait_s:g}) "
                                    f"for {who}; fix: that process may hang: stop it (the next request trains "
                                    "the model), or raise TLSEARCH_PT_WAIT_S")

    @contextmanager
    def _locked(self, key: str, t0: float) -> Iterator[None]:
        """This node's lock on ``key``, naming its holder while it is held."""
        lock = FileLock(str(self.path(key)) + ".lock")
        while True:
            try:
                lock.acquire(timeout=self.note_s)
                break
            except Timeout:
                self._waited(key, t0)
        holder = self.root / f"{key}.holder"
        try:
            write_atomic(holder, json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "t": time.time(),
                                             "since": time.strftime("%H:%M:%S")}).encode())
            yield
        finally:
            holder.unlink(missing_ok=True)
            lock.release()

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
        with self._locked(key, t0):
            found = self.load(key) or self._load_shared(key)
            if found is None and self.shared is not None and self.shared.wait_or_claim(
                    key, self.path(key), lambda: self._waited(key, t0), self.note_s):
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
