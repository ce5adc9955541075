"""Freeze strategies mapped onto ALIGNN's modules (identical names on the pure and dgl backends).

Blocks, input to output: embeddings (atom_embedding, edge_embedding, angle_embedding), then
alignn_layers[i] (each: node_update on the crystal graph, edge_update on the line graph), then
gcn_layers[i], then the head. The paper's strategies (Devi et al. 2024):

- ``all_unfrozen`` (ALL-UF): everything is trained;
- ``2b``: head + alignn_layers[i].node_update + gcn_layers are trained;
- ``3b``: head + alignn_layers[i].edge_update (line-graph updates) are trained;
- ``new_head`` (NPH): a fresh MLP head is trained, the body is frozen;
- ``last_layer``: only the head is trained;

plus ``freeze_depth=k``: the first k blocks (embeddings count as one block) are frozen. Frozen
normalisation layers are kept in eval mode so their running statistics do not drift.
"""

from __future__ import annotations

from torch import nn

from tlsearch.errors import UserInputError


def blocks(n_alignn: int, n_gcn: int) -> list[list[str]]:
    emb = ["body.atom_embedding", "body.edge_embedding", "body.angle_embedding"]
    return [emb] + [[f"body.alignn_layers.{i}"] for i in range(n_alignn)] + [[f"body.gcn_layers.{i}"] for i in range(n_gcn)]


def trainable_prefixes(strategy: str, n_alignn: int, n_gcn: int, freeze_depth: int | None = None) -> list[str]:
    """Module-name prefixes whose parameters are trained."""
    if freeze_depth is not None:
        all_blocks = blocks(n_alignn, n_gcn)
        if freeze_depth > len(all_blocks):
            raise UserInputError(f"freeze_depth {freeze_depth} exceeds the model's {len(all_blocks)} blocks "
                                 f"(embeddings + {n_alignn} ALIGNN + {n_gcn} GCN layers)")
        return ["head"] + [p for b in all_blocks[freeze_depth:] for p in b]
    if strategy == "all_unfrozen":
        return ["body", "head"]
    if strategy == "2b":
        return ["head", "body.gcn_layers"] + [f"body.alignn_layers.{i}.node_update" for i in range(n_alignn)]
    if strategy == "3b":
        return ["head"] + [f"body.alignn_layers.{i}.edge_update" for i in range(n_alignn)]
    if strategy in ("new_head", "last_layer"):
        return ["head"]
    raise UserInputError(f"unknown freeze strategy {strategy!r}; valid: all_unfrozen, 2b, 3b, new_head, last_layer")


def _matches(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def apply_freeze(model: nn.Module, prefixes: list[str]) -> None:
    """Set requires_grad from the prefixes (everything else frozen)."""
    for name, p in model.named_parameters():
        p.requires_grad_(_matches(name, prefixes))


def set_train_mode(model: nn.Module) -> None:
    """model.train(), but modules whose parameters are all frozen stay in eval mode (BatchNorm statistics)."""
    model.train()
    for m in model.modules():
        params = list(m.parameters(recurse=False))
        if params and not any(p.requires_grad for p in params):
            m.eval()
