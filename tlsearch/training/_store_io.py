"""Looking into, exporting and importing pre-trained model store entries.

An exported entry is the store's own file (``TLSCHK01`` magic, JSON header with format, key and meta, then
the ``torch.save`` state dict, CRC-32 checked), so it is self-contained and verifiable. Import checks the
magic, checksum, format, key and that the payload loads with ``torch.load(weights_only=True)`` as a dict of
tensors, then writes it atomically under its key; an entry already in the store is left as it is.
"""

from __future__ import annotations

import io
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tlsearch._io import read_checksummed, read_header, write_atomic
from tlsearch.errors import CorruptEntryError, PretrainedFileError
from tlsearch.training.store import FORMAT, PretrainStore

KEY_RE = re.compile(r"^[0-9a-f]{32}$")
_FIX_FILE = "fix: give a file written by `tlsearch models export`"


@dataclass
class EntryInfo:
    key: str
    path: Path
    size: int
    mtime: float
    meta: dict[str, Any]

    @property
    def sources(self) -> list[str]:
        return [f"{d}/{p}" for d, p in self.meta.get("material", {}).get("sources", [])]

    @property
    def head(self) -> str:
        return "multi" if self.meta.get("head") == "multi" else "single"

    @property
    def architecture(self) -> str:
        m = self.meta.get("material", {}).get("model", {})
        if not m:
            return "?"
        return (f"{m.get('alignn_layers')}+{m.get('gcn_layers')} layers, hidden {m.get('hidden_features')}, "
                f"embedding {m.get('embedding_features')}, {m.get('backend', 'pure')}")

    @property
    def age_s(self) -> float:
        return max(0.0, time.time() - self.mtime)


def entries(store: PretrainStore) -> tuple[list[EntryInfo], list[Path]]:
    """Every entry of ``store`` by its header (payloads are not read), and the files that are not entries."""
    found, bad = [], []
    for path in sorted(store.root.glob("*.pt")) if store.root.is_dir() else []:
        try:
            header, _ = read_header(path)
        except (CorruptEntryError, OSError):
            bad.append(path)
            continue
        if header.get("format") != FORMAT or header.get("key") != path.stem:
            bad.append(path)
            continue
        st = path.stat()
        found.append(EntryInfo(path.stem, path, st.st_size, st.st_mtime, header.get("meta", {})))
    return found, bad


def find(store: PretrainStore, prefix: str) -> EntryInfo:
    """The one entry whose key starts with ``prefix``."""
    found, _ = entries(store)
    if not prefix or not re.fullmatch(r"[0-9a-f]+", prefix):
        raise PretrainedFileError(f"key {prefix!r}: a key is hexadecimal (0-9, a-f); fix: copy it from "
                                  "`tlsearch models list`")
    hits = [e for e in found if e.key.startswith(prefix)]
    if not hits:
        raise PretrainedFileError(f"key {prefix!r}: no entry in the store {store.root} starts with it "
                                  f"({len(found)} entries); fix: pick a key from `tlsearch models list`")
    if len(hits) > 1:
        raise PretrainedFileError(f"key {prefix!r}: ambiguous in the store {store.root}, {len(hits)} entries "
                                  f"start with it ({', '.join(e.key[:12] for e in hits)}); fix: give more digits")
    return hits[0]


def verify(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Header and state of an exported entry; :class:`PretrainedFileError` naming the path and reason."""
    path = Path(path)
    if not path.is_file():
        reason = "is a directory" if path.is_dir() else "does not exist"
        raise PretrainedFileError(f"{path}: {reason}; {_FIX_FILE}")
    try:
        header, payload = read_checksummed(path)
    except CorruptEntryError as exc:
        reason = str(exc).removeprefix(f"{path}: ")
        raise PretrainedFileError(f"{path}: not a valid tlsearch pre-trained model file ({reason}); "
                                  f"{_FIX_FILE}") from None
    except OSError as exc:
        raise PretrainedFileError(f"{path}: cannot read ({exc.strerror}); {_FIX_FILE}") from None
    if header.get("format") != FORMAT:
        raise PretrainedFileError(f"{path}: format {header.get('format')!r} is not a tlsearch pre-trained model "
                                  f"entry ({FORMAT!r}); {_FIX_FILE}")
    key = header.get("key")
    if not isinstance(key, str) or not KEY_RE.match(key) or not isinstance(header.get("meta"), dict):
        raise PretrainedFileError(f"{path}: header has no valid key (got {key!r}) or meta; {_FIX_FILE}")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - weights_only refuses code and raises many types
        raise PretrainedFileError(f"{path}: the weights do not load as plain tensors ({type(exc).__name__}); "
                                  f"{_FIX_FILE}") from None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PretrainedFileError(f"{path}: the weights are not a state dict of tensors; {_FIX_FILE}")
    return header, state


def export_entry(store: PretrainStore, prefix: str, dest: str | Path) -> Path:
    """Write the entry to ``dest`` (a file, or ``<dest>/<key>.pt`` when ``dest`` is a directory)."""
    info = find(store, prefix)
    try:
        header, _ = verify(info.path)
    except PretrainedFileError as exc:
        raise PretrainedFileError(f"store entry {info.key}: damaged ({exc}); fix: run `tlsearch pretrain` "
                                  "again to retrain it") from None
    dest = Path(dest)
    if dest.is_dir():
        dest = dest / f"{info.key}.pt"
    if not dest.parent.is_dir():
        raise PretrainedFileError(f"{dest}: directory {dest.parent} does not exist; fix: create it first")
    write_atomic(dest, info.path.read_bytes())
    return dest


def import_entry(store: PretrainStore, path: str | Path) -> tuple[str, bool]:
    """Put a verified exported entry into ``store`` under its key; returns (key, already there)."""
    header, _ = verify(path)
    key = header["key"]
    existing = store.load(key)  # drops a damaged entry of that key, which the import then replaces
    if existing is not None:
        return key, True
    write_atomic(store.path(key), Path(path).read_bytes())
    if store.shared is not None:  # a store on an object store: every node finds it there
        store.shared.publish(key, store.path(key))
    return key, False


def key_matches(meta: dict[str, Any], key: str) -> bool:
    """Whether this installation computes ``key`` for the entry's material (else trials will not find it:
    other tlsearch, alignn or torch versions made it)."""
    material = meta.get("material")
    return isinstance(material, dict) and PretrainStore.key(material) == key
