"""SIGTERM with many clients: each is told over TCP and UDP, the process exits 0 fast.

tests/test_server_process.py checks one client; here there are many, some
with only TCP pending (not logged in), and every logged-in client's UDP
socket must receive the DISCONNECT datagram saying "shutdown".
"""

import socket
import time

import pytest

from gamesession.protocol.clientcore import SessionEnded
from gamesession.protocol.datagram import Kind

from hardening import SyncClient, challenged, read_until_closed

pytestmark = [pytest.mark.network]

CLIENTS = 40


@pytest.mark.timeout(90)
def test_sigterm_tells_every_client_over_tcp_and_udp(start_server):
    server = start_server()
    clients = [SyncClient(server, "p{}".format(i)) for i in range(CLIENTS)]
    pending = [socket.create_connection(("127.0.0.1", server.login_port), timeout=5)
               for _ in range(5)]
    try:
        for client in clients:  # every session knows its UDP address
            assert client.ping(timeout=2.0)
        # Two of the connections that never log in are mid-login (challenged);
        # all five are admitted and open before the SIGTERM.
        for sock in pending[:2]:
            assert challenged(server, sock)
        for sock in pending:
            assert read_until_closed(sock, 0.2) == (b"", False)
        started = time.monotonic()
        assert server.stop(sig=15) == 0
        assert time.monotonic() - started < 2.0
        for client in clients:
            got = client.datagrams(2.0, until=lambda kind, payload: kind == Kind.DISCONNECT)
            assert (Kind.DISCONNECT, b"shutdown") in got, client.core.user
            events = client.tcp_events(2.0)
            assert [e.reason for e in events if isinstance(e, SessionEnded)] == ["shutdown"]
        # Connections without a session get no bytes, only a close.
        for sock in pending:
            assert read_until_closed(sock, 2.0) == (b"", True)
    finally:
        for client in clients:
            client.close()
        for sock in pending:
            sock.close()
    log = server.log()
    assert log.count("reason=shutdown") == CLIENTS
    assert "Traceback" not in log


@pytest.mark.timeout(60)
def test_sigterm_with_no_clients_exits_zero(start_server):
    server = start_server()
    # The port listens before the reactor runs and installs its signal handlers;
    # one answered login shows the reactor is running.
    SyncClient(server, "first").logout()
    started = time.monotonic()
    assert server.stop(sig=15) == 0
    assert time.monotonic() - started < 2.0
