"""Files a space.yaml names for pre-training: shipped store entries (``data.pretrained``) and checkpoint PT
sources (``data.pretrain_sources: [{checkpoint: PATH}]``).

Relative paths are relative to the spec file's directory; :func:`resolve_paths` makes them absolute when the
spec is loaded, so trials (other processes, other nodes, resumed studies) see the same files. ``validate``
checks every file; ``run`` and ``pretrain`` import the shipped entries into the store before anything trains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tlsearch import remote
from tlsearch.errors import PretrainedFileError, UserInputError


def resolve_paths(data: Any, base: Path) -> Any:
    """The raw spec mapping with ``data.pretrained``, checkpoint source and ``warm_start`` paths made absolute
    against ``base``."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
        return data

    def absolute(p: Any) -> Any:
        return str((base / Path(p).expanduser()).resolve()) if isinstance(p, str) and p else p

    if isinstance(data.get("warm_start"), list):  # an experiment on an object store stays a URI
        data = {**data, "warm_start": [p if remote.is_remote(p) else absolute(p) for p in data["warm_start"]]}
    d = dict(data["data"])
    if isinstance(d.get("pretrained"), list):
        d["pretrained"] = [absolute(p) for p in d["pretrained"]]
    if isinstance(d.get("pretrain_sources"), list):
        d["pretrain_sources"] = [{**s, "checkpoint": absolute(s["checkpoint"])}
                                 if isinstance(s, dict) and "checkpoint" in s else s for s in d["pretrain_sources"]]
    return {**data, "data": d}


def check_pretrained(spec: Any, where: str = "space.yaml") -> list[str]:
    """Verify every ``data.pretrained`` file (format, checksum, weights); returns their keys."""
    from tlsearch.training._store_io import verify

    keys = []
    for i, path in enumerate(spec.data.pretrained):
        try:
            header, _ = verify(path)
        except PretrainedFileError as exc:
            raise PretrainedFileError(f"{where}: data.pretrained.{i}: {exc}") from None
        keys.append(header["key"])
    return keys


def import_pretrained(spec: Any, store: Any, where: str = "space.yaml") -> list[tuple[int, str, bool]]:
    """Put every ``data.pretrained`` file into ``store`` (a :class:`PretrainStore`); an entry whose key is
    already there is left alone. Returns (field index, key, already there) per file."""
    from tlsearch.training._store_io import import_entry

    done = []
    for i, path in enumerate(spec.data.pretrained):
        try:
            key, already = import_entry(store, path)
        except PretrainedFileError as exc:
            raise PretrainedFileError(f"{where}: data.pretrained.{i}: {exc}") from None
        done.append((i, key, already))
    return done


def checkpoint_sources(spec: Any) -> list[tuple[int, Any]]:
    return [(i, s) for i, s in enumerate(spec.data.pretrain_sources) if getattr(s, "checkpoint", None)]


def check_checkpoints(spec: Any, where: str = "space.yaml") -> None:
    """Every checkpoint PT source loads and matches the architecture the study searches (which it then fixes)."""
    labels = [s.label for s in spec.data.pretrain_sources]
    for i, label in enumerate(labels):
        if label in labels[:i]:
            raise UserInputError(f"{where}: data.pretrain_sources.{i}: label {label!r} is also the label of "
                                 f"data.pretrain_sources.{labels.index(label)}; trials pick a source by its label; "
                                 "fix: give each source its own label")
    sources = checkpoint_sources(spec)
    if not sources:
        return
    from tlsearch.training.pt_checkpoint import check_architecture, read_checkpoint

    a = spec.search.architecture
    searched = {name: getattr(a, name) for name in ("alignn_layers", "gcn_layers", "hidden_features",
                                                    "embedding_features")}
    several = {k: v for k, v in searched.items() if not isinstance(v, int) and
               not (isinstance(v, list) and len(set(v)) == 1)}
    for i, src in sources:
        loc = f"{where}: data.pretrain_sources.{i}"
        try:
            ckpt = read_checkpoint(src.checkpoint)
        except PretrainedFileError as exc:
            raise PretrainedFileError(f"{loc}: {exc}") from None
        if several:
            dims = ", ".join(f"search.architecture.{k} = {v if isinstance(v, list) else v.model_dump()}"
                             for k, v in several.items())
            raise UserInputError(
                f"{loc}: checkpoint {src.checkpoint} has one architecture ({ckpt.describe()}) but the study "
                f"searches {dims}; fix: set search.architecture to the checkpoint's values")
        model = spec.model_fixed().model_copy(update={k: v[0] if isinstance(v, list) else v
                                                      for k, v in searched.items()})
        try:
            check_architecture(ckpt, model, spec.graph.atom_features)
        except PretrainedFileError as exc:
            raise PretrainedFileError(f"{loc}: {exc}") from None
