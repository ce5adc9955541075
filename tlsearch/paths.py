"""Where tlsearch keeps its caches: ``$TLSEARCH_CACHE``, else ``$XDG_CACHE_HOME/tlsearch``, else ``~/.cache/tlsearch``.

The directory may sit on a shared filesystem: every store below it writes atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

GRAPH_STORE_ENV = "TLSEARCH_GRAPH_STORE"  # the graph store of every worker (cluster.graph_store); graphs/cache.py


def cache_root(override: str | os.PathLike[str] | None = None) -> Path:
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("TLSEARCH_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "tlsearch"
