"""Graph construction parameters; everything that changes a graph is in here and in its cache key."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from tlsearch.errors import UserInputError

Builder = Literal["pure", "dgl"]
AtomFeatures = Literal["cgcnn", "basic", "atomic_number", "cfid"]
#: bump when the stored graph layout or its construction changes
GRAPH_FORMAT_VERSION = 1


@dataclass(frozen=True)
class GraphParams:
    """ALIGNN graph parameters. Defaults are Devi et al.'s: 8 A cutoff, 12 neighbours, cgcnn features,
    all bond pairs sharing an atom as triplets (``three_body_cutoff=None`` means ``cutoff``).

    ``builder='pure'`` uses alignn's pure-torch builder (directed top-k neighbours per atom);
    ``builder='dgl'`` the classic k-nearest DGL builder the paper used (needs the ``dgl`` extra)."""

    builder: Builder = "pure"
    cutoff: float = 8.0
    max_neighbors: int = 12
    three_body_cutoff: float | None = None
    atom_features: AtomFeatures = "cgcnn"

    def __post_init__(self) -> None:
        if self.builder not in ("pure", "dgl"):
            raise UserInputError(f"graph builder must be 'pure' or 'dgl', got {self.builder!r}")
        if not self.cutoff > 0:
            raise UserInputError(f"graph cutoff must be > 0 A, got {self.cutoff}")
        if self.max_neighbors < 1:
            raise UserInputError(f"max_neighbors must be >= 1, got {self.max_neighbors}")
        tb = self.three_body_cutoff
        if tb is not None and not 0 < tb <= self.cutoff:
            raise UserInputError(f"three_body_cutoff must be in (0, cutoff={self.cutoff}], got {tb}")

    @property
    def effective_three_body_cutoff(self) -> float:
        return self.cutoff if self.three_body_cutoff is None else self.three_body_cutoff

    def key_material(self) -> dict:
        import alignn

        return {**asdict(self), "three_body_cutoff": self.effective_three_body_cutoff,
                "format": GRAPH_FORMAT_VERSION, "alignn": getattr(alignn, "__version__", "?")}
