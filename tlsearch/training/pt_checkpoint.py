"""Checkpoint PT sources: weights a ``finetune`` trial starts from instead of pre-training.

Read, never executed (``torch.load(weights_only=True)``), and mapped onto :class:`PropertyModel` names:

- a tlsearch model file (``tlsearch train -o DIR`` writes ``DIR/model.pt``): its state as saved; a directory
  holding one (``tlsearch export``'s model directory, a trial's model directory) means its ``model.pt``, the
  model of the first repeat;
- a tlsearch pre-trained entry (``tlsearch models export``): its state as stored;
- an ALIGNN checkpoint in the layout alignn's own trainer writes (and its published models use): a folder or
  zip holding ``config.json`` (the TrainingConfig, model section included) and ``best_model.pt`` (the model's
  state dict). Model ``alignn_atomwise_pure`` is the ``pure`` backend, ``alignn`` the ``dgl`` one; every module
  keeps its name under ``body.``, and alignn's ``fc`` becomes ``head.fc``.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from tlsearch._io import MAGIC
from tlsearch.errors import PretrainedFileError
from tlsearch.training.config import ModelSpec
from tlsearch.training.model import ATOM_INPUT_FEATURES, PropertyModel

ALIGNN_NAMES = {"alignn_atomwise_pure": "pure", "alignn": "dgl"}
ARCH = ("alignn_layers", "gcn_layers", "hidden_features", "embedding_features", "edge_input_features",
        "triplet_input_features")
_FIX = ("fix: give a tlsearch model file or directory (`tlsearch train -o`, `tlsearch export`), a file of "
        "`tlsearch models export`, or an ALIGNN folder or zip with config.json and best_model.pt")


@dataclass
class LoadedCheckpoint:
    path: Path
    kind: str                    # "tlsearch model", "tlsearch pre-trained entry" or "alignn <name>"
    backend: str                 # "pure" or "dgl"
    arch: dict[str, int]
    atom_input_features: int
    state: dict[str, torch.Tensor]  # PropertyModel names: body.* and head.*
    head: str                    # "linear" (one output: kept for finetune) or another kind (a fresh head)
    digest: str                  # sha256 of the weights
    meta: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        a = self.arch
        return (f"{self.backend} backend, {a['alignn_layers']}+{a['gcn_layers']} layers, hidden "
                f"{a['hidden_features']}, embedding {a['embedding_features']}, edge inputs {a['edge_input_features']}, "
                f"triplet inputs {a['triplet_input_features']}, {self.atom_input_features} atom input features")


def _bad(path: Path, reason: str) -> PretrainedFileError:
    return PretrainedFileError(f"{path}: {reason}; {_FIX}")


def _load_weights(path: Path, data: bytes, what: str) -> Any:
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated zips and refused pickles raise many types
        raise _bad(path, f"{what} does not load as plain tensors ({type(exc).__name__}: truncated, corrupted "
                         "or not a torch file)") from None


def _alignn_files(path: Path) -> tuple[bytes, bytes, str]:
    """(config.json bytes, best_model.pt bytes, where) from a folder or a zip."""
    if path.is_dir():
        for d in [path, *sorted(p for p in path.iterdir() if p.is_dir())]:
            if (d / "best_model.pt").is_file() and (d / "config.json").is_file():
                return (d / "config.json").read_bytes(), (d / "best_model.pt").read_bytes(), str(d)
        have = "best_model.pt" if any(path.rglob("best_model.pt")) else "config.json" if any(
            path.rglob("config.json")) else "neither"
        raise _bad(path, f"folder has no config.json next to a best_model.pt (found {have})")
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            for name in names:
                p = PurePosixPath(name)
                if p.name == "best_model.pt" and str(p.parent / "config.json").lstrip("./") in \
                        {n.lstrip("./") for n in names}:
                    cfg = str(p.parent / "config.json") if str(p.parent) != "." else "config.json"
                    return z.read(cfg), z.read(name), f"{path}!{p.parent}"
    except zipfile.BadZipFile as exc:
        raise _bad(path, f"damaged zip ({exc})") from None
    except (zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise _bad(path, f"cannot read the zip ({exc})") from None
    raise _bad(path, "zip has no config.json next to a best_model.pt")


def _read_alignn(path: Path) -> LoadedCheckpoint:
    cfg_bytes, weights, where = _alignn_files(path)
    try:
        config = json.loads(cfg_bytes)
        model = config["model"]
        name = model["name"]
    except (ValueError, KeyError, TypeError) as exc:
        raise _bad(path, f"config.json has no model section with a name ({type(exc).__name__}: {exc})") from None
    if name not in ALIGNN_NAMES:
        raise _bad(path, f"config.json model name {name!r} is not supported; supported: "
                         f"{', '.join(f'{n} ({b} backend)' for n, b in ALIGNN_NAMES.items())}")
    if name == "alignn":
        from alignn.models.alignn import ALIGNNConfig as Config
    else:
        from alignn.models.alignn_atomwise_pure import ALIGNNAtomWisePureConfig as Config
    try:
        full = Config(**model)
    except Exception as exc:  # noqa: BLE001 - pydantic's ValidationError
        raise _bad(path, f"config.json model section is not a valid {name} config ({exc})".replace("\n", " ")) from None
    raw = _load_weights(path, weights, "best_model.pt")
    if isinstance(raw, dict) and isinstance(raw.get("model"), dict):  # ignite-era checkpoints wrap the state
        raw = raw["model"]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise _bad(path, "best_model.pt is not a state dict of tensors")
    state = {(f"head.{k}" if k.startswith("fc.") else f"body.{k}"): v for k, v in raw.items()}
    fc = raw.get("fc.weight")
    head = "linear" if fc is not None and fc.shape[0] == 1 else "other"
    return LoadedCheckpoint(path, f"alignn {name}", ALIGNN_NAMES[name], {k: int(getattr(full, k)) for k in ARCH},
                            int(full.atom_input_features), state, head, hashlib.sha256(weights).hexdigest(),
                            {"epochs": config.get("epochs"), "atom_features": config.get("atom_features"),
                             "from": where})


def _from_spec(path: Path, kind: str, model: dict[str, Any], atom_features: str, state: dict[str, Any],
               head: str, data: bytes, meta: dict[str, Any]) -> LoadedCheckpoint:
    try:
        spec = ModelSpec.model_validate(model)
    except Exception as exc:  # noqa: BLE001
        raise _bad(path, f"its model section is not valid ({exc})".replace("\n", " ")) from None
    return LoadedCheckpoint(path, kind, spec.backend, {k: getattr(spec, k) for k in ARCH},
                            ATOM_INPUT_FEATURES.get(atom_features, -1), state, head,
                            hashlib.sha256(data).hexdigest(), meta)


def read_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Load a checkpoint PT source; :class:`PretrainedFileError` naming the path and the reason otherwise."""
    path = Path(path)
    if not path.exists():
        raise _bad(path, "does not exist")
    from tlsearch.training.predict import model_files  # the one rule for a model directory's file names

    members = model_files(path)  # by repeat, then fold: the first is repeat 0 (its fold 0 when cross-validated)
    first = members[0] if members else None
    if first is not None and not (path / "best_model.pt").is_file():
        # a tlsearch model directory (`tlsearch export`, `train -o`): its first model (repeat 0; fold 0 of a
        # cross-validated one: every fold model of a repeat starts from the same weights and sees most of its sample)
        path = first
    if path.is_dir() or path.suffix.lower() == ".zip" or (zipfile.is_zipfile(path) and not _is_torch_zip(path)):
        return _read_alignn(path)
    data = path.read_bytes()
    if data.startswith(MAGIC):
        from tlsearch.training._store_io import verify

        header, state = verify(path)
        meta = header["meta"]
        material = meta.get("material", {})
        return _from_spec(path, "tlsearch pre-trained entry", material.get("model", {}),
                          material.get("graph", {}).get("atom_features", "cgcnn"), state,
                          meta.get("head", "linear"), data, {"epochs": meta.get("epochs"), "n_train": meta.get("n_train")})
    blob = _load_weights(path, data, "the file")
    if isinstance(blob, dict) and blob.get("format") == "tlsearch-model-v1":
        cfg = blob.get("config", {})
        return _from_spec(path, "tlsearch model", cfg.get("model", {}),
                          cfg.get("graph", {}).get("atom_features", "cgcnn"), blob.get("state", {}),
                          blob.get("head", "linear"), data, {"epochs": cfg.get("train", {}).get("optim", {}).get("epochs")})
    if isinstance(blob, dict) and blob and all(isinstance(v, torch.Tensor) for v in blob.values()):
        raise _bad(path, "a bare state dict (an ALIGNN best_model.pt?) says nothing about its architecture: give "
                         "the folder or zip that holds it together with its config.json")
    raise _bad(path, "not a tlsearch model, a tlsearch pre-trained entry or an ALIGNN checkpoint")


def _is_torch_zip(path: Path) -> bool:
    """torch.save files are zips too: they hold ``<name>/data.pkl``."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/data.pkl") or n == "data.pkl" for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def check_architecture(ckpt: LoadedCheckpoint, model: ModelSpec, atom_features: str) -> None:
    """The checkpoint's weights fit the model a trial builds from ``model`` (same names and shapes)."""
    ours = LoadedCheckpoint(ckpt.path, "", model.backend, {k: getattr(model, k) for k in ARCH},
                            ATOM_INPUT_FEATURES[atom_features], {}, "", "")
    if ckpt.backend != ours.backend or ckpt.arch != ours.arch or ckpt.atom_input_features != ours.atom_input_features:
        raise PretrainedFileError(
            f"{ckpt.path}: its architecture ({ckpt.describe()}) does not match the study's ({ours.describe()}); "
            "fix: set search.architecture (backend, layers, hidden, embedding) and graph.atom_features to the "
            "checkpoint's, or use a checkpoint of this architecture")
    body = {k[len("body."):]: v for k, v in ckpt.state.items() if k.startswith("body.")}
    try:
        PropertyModel(model, atom_features=atom_features).body.load_state_dict(body)
    except RuntimeError as exc:
        raise PretrainedFileError(f"{ckpt.path}: its weights do not fit the study's model "
                                  f"({' '.join(str(exc).split())[:400]})") from None
