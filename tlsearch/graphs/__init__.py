"""ALIGNN graphs: parameters, builders (pure-torch and dgl), the packed format and the on-disk cache."""

from tlsearch.graphs._build import GraphBuildError, build_arrays, dgl_available
from tlsearch.graphs._pack import GraphPack, feature_table
from tlsearch.graphs._params import GraphParams
from tlsearch.graphs.cache import GraphCache, GraphSet

__all__ = ["GraphBuildError", "GraphCache", "GraphPack", "GraphParams", "GraphSet", "build_arrays",
           "dgl_available", "feature_table"]
