"""The ``tlsearch`` command line."""
