"""ALIGNN body + property head(s), on either backend, with the same module names on both.

The body is alignn's own model with its final ``fc`` replaced by ``Identity``, so it returns the pooled
crystal representation; the head maps that to one output per property:

- ``LinearHead``: one Linear, like ALIGNN's ``fc`` (scratch, PT, and what ``last_layer`` retrains);
- ``MLPHead``: Linear(hidden, 64) - SiLU - Linear(64, 1), the paper's fresh head for ``new_head`` (NPH);
- ``MultiHead``: one small MLP per property (the paper's MPT head: SiLU, Linear hidden->128, SiLU,
  [Linear 128->128, SiLU] x (depth-1), Linear 128->1), outputs stacked as (batch, properties).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from tlsearch.training.config import ModelSpec

ATOM_INPUT_FEATURES = {"cgcnn": 92, "basic": 11, "atomic_number": 1, "cfid": 438}


def _pure_body(spec: ModelSpec, atom_input: int) -> nn.Module:
    from alignn.models.alignn_atomwise_pure import ALIGNNAtomWisePure, ALIGNNAtomWisePureConfig

    cfg = ALIGNNAtomWisePureConfig(
        name="alignn_atomwise_pure", atom_input_features=atom_input, alignn_layers=spec.alignn_layers,
        gcn_layers=spec.gcn_layers, hidden_features=spec.hidden_features,
        embedding_features=spec.embedding_features, edge_input_features=spec.edge_input_features,
        triplet_input_features=spec.triplet_input_features, output_features=1, calculate_gradient=False,
        energy_mult_natoms=False, use_penalty=False, use_zbl=False, lg_on_fly=False, gradwise_weight=0.0,
    )
    return ALIGNNAtomWisePure(cfg)


def _dgl_body(spec: ModelSpec, atom_input: int) -> nn.Module:
    os.environ.setdefault("DGLBACKEND", "pytorch")
    from tlsearch.graphs import dgl_available

    if not dgl_available():
        raise RuntimeError("model backend 'dgl' needs the dgl extra: pip install -c constraints.txt 'tlsearch[dgl]'")
    from alignn.models.alignn import ALIGNN, ALIGNNConfig

    cfg = ALIGNNConfig(
        name="alignn", atom_input_features=atom_input, alignn_layers=spec.alignn_layers,
        gcn_layers=spec.gcn_layers, hidden_features=spec.hidden_features,
        embedding_features=spec.embedding_features, edge_input_features=spec.edge_input_features,
        triplet_input_features=spec.triplet_input_features, output_features=1,
    )
    return ALIGNN(cfg)


class LinearHead(nn.Module):
    def __init__(self, hidden: int, n_out: int = 1) -> None:
        super().__init__()
        self.fc = nn.Linear(hidden, n_out)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(h)


class MLPHead(nn.Module):
    def __init__(self, hidden: int, width: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden, width), nn.SiLU(), nn.Linear(width, 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class MultiHead(nn.Module):
    def __init__(self, hidden: int, n_props: int, depth: int = 1, width: int = 128) -> None:
        super().__init__()

        def one() -> nn.Sequential:
            layers: list[nn.Module] = [nn.SiLU(), nn.Linear(hidden, width), nn.SiLU()]
            for _ in range(depth - 1):
                layers += [nn.Linear(width, width), nn.SiLU()]
            return nn.Sequential(*layers, nn.Linear(width, 1))

        self.heads = nn.ModuleList(one() for _ in range(n_props))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.cat([head(h) for head in self.heads], dim=1)


def make_head(kind: str, hidden: int, n_props: int = 1, depth: int = 1) -> nn.Module:
    if kind == "linear":
        return LinearHead(hidden, n_props)
    if kind == "mlp":
        return MLPHead(hidden)
    if kind == "multi":
        return MultiHead(hidden, n_props, depth)
    raise ValueError(f"unknown head kind {kind!r}")


class PropertyModel(nn.Module):
    """``body`` (ALIGNN up to the pooled readout) + ``head``. ``forward`` takes the (graph, line graph)
    batch from :meth:`GraphPack.batch` and returns (batch, n_outputs)."""

    def __init__(self, spec: ModelSpec, head_kind: str = "linear", n_props: int = 1, head_depth: int = 1,
                 atom_features: str = "cgcnn") -> None:
        super().__init__()
        self.spec = spec
        atom_input = ATOM_INPUT_FEATURES[atom_features]
        self.body = (_pure_body if spec.backend == "pure" else _dgl_body)(spec, atom_input)
        self.body.fc = nn.Identity()
        self.head_kind = head_kind
        self.head = make_head(head_kind, spec.hidden_features, n_props, head_depth)

    def features(self, g: Any, lg: Any) -> torch.Tensor:
        if self.spec.backend == "pure":
            h = self.body((g, lg, None))["out"]
        else:
            h = self.body((_to_dgl(g), _to_dgl(lg), None))
        return h.reshape(-1, self.spec.hidden_features)

    def forward(self, g: Any, lg: Any) -> torch.Tensor:
        return self.head(self.features(g, lg))

    def replace_head(self, kind: str, n_props: int = 1, depth: int = 1) -> None:
        device = next(self.body.parameters()).device
        self.head_kind = kind
        self.head = make_head(kind, self.spec.hidden_features, n_props, depth).to(device)


def _to_dgl(tg: Any) -> Any:
    """alignn TorchGraph batch -> a batched DGLGraph (batch sizes set, so DGL's readout pools per crystal)."""
    import dgl

    g = dgl.graph((tg.src, tg.dst), num_nodes=tg.num_nodes)
    for k, v in tg.ndata.items():
        g.ndata[k] = v
    for k, v in tg.edata.items():
        g.edata[k] = v
    if tg.batch_num_nodes is not None:
        g.set_batch_num_nodes(tg.batch_num_nodes)
        g.set_batch_num_edges(tg.batch_num_edges)
    return g


def count_parameters(model: nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
