"""tlsearch: search transfer-learning strategies for ALIGNN property models on a Ray cluster."""

__version__ = "0.1.0"
