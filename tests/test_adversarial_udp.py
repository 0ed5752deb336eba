"""Adversarial UDP on loopback against a real twistd: floods, replays, tampering.

The attacker's sockets must receive zero bytes; honest sessions keep working.
Every loop is bounded by a count and every wait by a timeout.
"""

import os
import random
import select
import socket
import threading
import time

import pytest

from gamesession import mmsg
from gamesession.protocol.datagram import HEADER_SIZE, TOKEN_SIZE, Drop, Kind

from conftest import need
from hardening import SyncClient

pytestmark = [pytest.mark.network]


@pytest.fixture(params=["batched", "plain"])
def game_server(request, start_server):
    """``start_server`` on each game-port path in turn: recvmmsg/sendmmsg, and udp.Port."""
    udp_io = request.param
    if udp_io == "batched":
        need(mmsg.available(), "recvmmsg/sendmmsg are Linux-only")

    def start(*options):
        server = start_server("--udp-io", udp_io, *options)
        wait = time.monotonic() + 5
        while "I/O " + udp_io not in server.log() and time.monotonic() < wait:
            time.sleep(0.02)
        assert "game port UDP {} I/O {}".format(server.udp_port, udp_io) in server.log()
        return server

    return start

FLOOD_PACKETS = 60000


def attacker_socket():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def nothing_before_the_marker(sock, send_marker, is_marker, timeout: float = 5.0) -> bool:
    """True when the first datagram ``sock`` receives is the answer to a marker
    it sent after everything else.  Loopback UDP keeps the order of one socket's
    datagrams and the server handles them in order, so the answer proves the
    server had handled all that came before; arriving first, it proves none of
    that was answered.  No answer within ``timeout`` is False (no proof)."""
    send_marker()
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            return False
        return is_marker(sock.recv(65536))


def received_nothing(sock, server) -> bool:
    """``sock`` got no answer to anything it sent the game port: the marker is a
    PING of a fresh session sent from ``sock`` (the session roams there)."""
    marker = SyncClient(server, "marker")
    ping_id = os.urandom(8)
    packet = marker.packet(Kind.PING, ping_id)

    def is_pong(data):
        try:
            return marker.core.datagram_received(data) == (Kind.PONG, ping_id)
        except Drop:
            return False
    try:
        return nothing_before_the_marker(
            sock, lambda: sock.sendto(packet, ("127.0.0.1", server.udp_port)), is_pong)
    finally:
        marker.logout()


def only_the_pong(client) -> bool:
    """A client's next datagram is the PONG to a PING it sends now (nothing came before)."""
    ping_id = os.urandom(8)
    client.send(Kind.PING, ping_id)
    return client.datagrams(3.0, until=lambda k, p: k == Kind.PONG) == [(Kind.PONG, ping_id)]


def no_session_ended(server) -> bool:
    """No session ended but the markers' (which log out)."""
    return not [line for line in server.log().splitlines()
                if "session ended" in line and "user=marker " not in line]


@pytest.mark.timeout(120)
def test_flood_of_random_datagrams_while_an_honest_client_pings(game_server):
    server = game_server()
    honest = SyncClient(server, "honest")
    flooder = attacker_socket()
    target = ("127.0.0.1", server.udp_port)
    captured = []
    stop = threading.Event()
    counts = {"sent": 0}

    def flood():
        rnd = random.Random(6)
        token = honest.core.channel.token
        for i in range(FLOOD_PACKETS):
            if stop.is_set():
                return
            choice = i % 5
            if choice == 0:
                packet = rnd.randbytes(rnd.randrange(0, 1400))
            elif choice == 1:
                packet = token + rnd.randbytes(rnd.randrange(0, 200))
            elif choice == 2:
                packet = rnd.randbytes(rnd.randrange(0, HEADER_SIZE + 17))
            elif choice == 3 and captured:
                packet = captured[rnd.randrange(len(captured))]  # replays
            else:
                packet = rnd.randbytes(TOKEN_SIZE) + honest.core.channel.token + rnd.randbytes(64)
            try:
                flooder.sendto(packet, target)
                counts["sent"] += 1
            except (BlockingIOError, OSError):
                time.sleep(0.001)
            if i % 500 == 499:
                time.sleep(0.005)  # leave the honest client some CPU on a 2-core box

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    answered = 0
    pings = 40
    try:
        deadline = time.monotonic() + 10
        while counts["sent"] < 2000 and time.monotonic() < deadline:
            time.sleep(0.01)
        for _ in range(pings):
            time.sleep(0.05)
            ping_id = os.urandom(8)
            packet = honest.send(Kind.PING, ping_id)
            got = honest.datagrams(1.0, until=lambda k, p: k == Kind.PONG and p == ping_id)
            if (Kind.PONG, ping_id) in got:
                answered += 1
                # Replayed only once known delivered: a copy that races ahead of a
                # late or lost original is an on-path roam (SECURITY.md), not a replay.
                captured.append(packet)
    finally:
        stop.set()
        thread.join(30)
    assert counts["sent"] > 5000
    assert answered >= pings * 0.8, (answered, pings)
    assert received_nothing(flooder, server)
    assert honest.ping(timeout=2.0)
    assert no_session_ended(server)
    assert honest.undecodable == 0
    honest.logout()
    flooder.close()
    log = server.log()
    assert "Traceback" not in log


@pytest.mark.timeout(60)
def test_captured_packets_replayed_tampered_and_token_swapped(game_server):
    server = game_server()
    alice = SyncClient(server, "alice")
    bob = SyncClient(server, "bob")
    attacker = attacker_socket()
    target = ("127.0.0.1", server.udp_port)
    assert alice.ping() and bob.ping()

    # A packet alice sent and the server accepted, and one captured but never delivered.
    ping_id = b"captured"
    delivered = alice.send(Kind.PING, ping_id)
    assert alice.datagrams(1.0, until=lambda k, p: k == Kind.PONG) == [(Kind.PONG, ping_id)]
    undelivered = alice.packet(Kind.PING, b"withheld")

    forgeries = [delivered] * 3  # plain replays
    for original in (delivered, undelivered):
        for bit in (0, 5 * 8 + 1, TOKEN_SIZE * 8 + 3, HEADER_SIZE * 8, HEADER_SIZE * 8 + 130,
                    len(original) * 8 - 1):
            flipped = bytearray(original)
            flipped[bit // 8] ^= 1 << (bit % 8)
            forgeries.append(bytes(flipped))
        for size in (0, 1, TOKEN_SIZE, HEADER_SIZE, HEADER_SIZE + 16, len(original) - 1):
            forgeries.append(original[:size])
        forgeries.append(bob.core.channel.token + original[TOKEN_SIZE:])
        forgeries.append(original + b"\x00")

    for packet in forgeries:
        attacker.sendto(packet, target)
    for packet in forgeries:  # from alice's own address too: still nothing
        alice.udp.sendto(packet, target)

    assert received_nothing(attacker, server)
    # No PONG for a replay, no second answer for anything: the next datagram
    # either gets is the answer to a PING sent after all the forgeries.
    assert only_the_pong(alice)
    assert only_the_pong(bob)
    # Both sessions undisturbed, and alice's address did not move to the attacker's.
    assert alice.ping() and bob.ping()
    assert no_session_ended(server)
    assert alice.undecodable == 0 and bob.undecodable == 0
    alice.logout()
    bob.logout()
    attacker.close()


@pytest.mark.timeout(60)
def test_rate_limit_drops_a_flooding_session_not_others(game_server):
    server = game_server("--max-datagram-rate", "50")
    greedy = SyncClient(server, "greedy")
    polite = SyncClient(server, "polite")
    for i in range(500):
        greedy.send(Kind.PING, b"%d" % i)
    pongs = greedy.datagrams(1.5)
    assert 40 <= len(pongs) < 200, len(pongs)  # the burst, plus what the rate refilled
    assert polite.ping()
    time.sleep(1.1)  # the greedy one's bucket refills; it is not punished beyond the rate
    assert greedy.ping()
    greedy.logout()
    polite.logout()


@pytest.mark.timeout(90)
def test_flood_at_the_knock_ports_gets_nothing_and_grants_nothing(start_server, tmp_path):
    from conftest import knock_ports
    from gamesession.knock import rule as knock

    ports = knock_ports()
    secret_file = str(tmp_path / "knock.secret")
    secret = knock.write_secret_file(secret_file)
    server = start_server("--knock", ",".join(map(str, ports)), "--knock-secret", secret_file,
                          "--knock-reply")
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    attacker.bind(("127.0.0.5", 0))
    attacker.setblocking(False)
    rnd = random.Random(7)
    captured = list(knock.make_client_knocks(ports, secret, "127.0.0.1", time.time()))
    for i in range(20000):
        port = ports[i % 3] if i % 4 else rnd.choice(ports)
        choice = i % 5
        if choice == 0:
            data = rnd.randbytes(knock.AUTH_KNOCK_BYTES)
        elif choice == 1:
            data = captured[i % 3][1]  # a knock made for another address
        elif choice == 2:
            data = b"\x00"  # classic knocks: not enough here
        else:
            data = rnd.randbytes(rnd.randrange(0, 200))
        try:
            attacker.sendto(data, ("127.0.0.1", port))
        except (BlockingIOError, OSError):
            time.sleep(0.001)
        if i % 500 == 499:
            time.sleep(0.005)
    # The attacker's address got no grant: the login port closes on it at once.
    sock = socket.socket()
    sock.bind(("127.0.0.5", 0))
    sock.settimeout(5)
    try:
        # The gate's reset can win the race with connect() returning.
        sock.connect(("127.0.0.1", server.login_port))
        assert sock.recv(100) == b""
    except ConnectionResetError:
        pass
    sock.close()
    # Nothing came back to the attacker: the marker is a fresh, genuine knock
    # sequence for the attacker's own address, sent after the flood; its reply
    # (--knock-reply) must be the first datagram the attacker receives.
    fresh = list(knock.make_client_knocks(ports, secret, "127.0.0.5", time.time()))

    def send_sequence():
        for port, data in fresh:
            attacker.sendto(data, ("127.0.0.1", port))
            time.sleep(0.05)  # the sequence's order across three sockets
    assert nothing_before_the_marker(
        attacker, send_sequence, lambda data: knock.decode_reply(data) == server.login_port)
    # The honest client knocks (fresh knocks, from its own address) and logs in.
    honest = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    honest.bind(("127.0.0.1", 0))
    honest.settimeout(3)
    for port, data in knock.make_client_knocks(ports, secret, "127.0.0.1", time.time()):
        honest.sendto(data, ("127.0.0.1", port))
    assert knock.decode_reply(honest.recv(100)) == server.login_port
    honest.close()
    client = SyncClient(server, "knocked")
    assert client.ping()
    client.logout()
    attacker.close()
