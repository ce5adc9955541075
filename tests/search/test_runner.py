"""Runner helpers that need no Ray."""

from __future__ import annotations


def test_a_busy_dashboard_port_falls_back_to_a_free_one():
    import socket

    from tlsearch.search.runner import _free_port, _port_free

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert not _port_free("127.0.0.1", port)
        other = _free_port("127.0.0.1")
        assert other != port and _port_free("127.0.0.1", other)
