"""ALIGNN graphs: parameters, builders (pure-torch and dgl), the packed format and the on-disk cache.

Names are imported on first use (PEP 562): ``GraphParams`` is plain data, and code that only needs it
(the spec, the analysis) must not pay for torch."""

from __future__ import annotations

from tlsearch._lazy import lazy_getattr

_WHERE = {"GraphBuildError": "_build", "build_arrays": "_build", "dgl_available": "_build",
          "GraphPack": "_pack", "feature_table": "_pack", "GraphParams": "_params",
          "GraphCache": "cache", "GraphSet": "cache"}

__all__ = sorted(_WHERE)

__getattr__ = lazy_getattr(__name__, _WHERE)
