"""The session's loopback guard (tests/conftest.py) refuses what would leave loopback."""

import socket

import pytest


def test_outside_names_and_addresses_are_refused_and_recorded(request):
    guard = request.config.loopback_guard
    before = list(guard.attempts)
    with pytest.raises(socket.gaierror, match="stays on loopback"):
        socket.create_connection(("storage.googleapis.com", 443), timeout=1)
    with pytest.raises(OSError, match="stays on loopback"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)  # TEST-NET-1: never routed
    assert guard.attempts[len(before) :] == [
        "resolve storage.googleapis.com",
        "connect 192.0.2.1:80",
    ]
    del guard.attempts[len(before) :]  # refused on purpose: not a leak of the suite


def test_loopback_is_reachable():
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, socket.create_connection(listener.getsockname(), timeout=1):
        pass
    assert socket.getaddrinfo("localhost", 80)
