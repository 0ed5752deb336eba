"""A soak against a real twistd: many clients logging in and out at random.

Afterwards every session that started has ended (counted in the server log)
and the server's resident memory is back near where it was after a warm-up.
Bounded by a step count and a wall-clock budget.
"""

import os
import random
import re
import time

import pytest

from gamesession.protocol.datagram import Kind

from hardening import SyncClient, vm_rss_kib

pytestmark = [pytest.mark.network]

MAX_LIVE = 25
STEPS = 1500
BUDGET = 25.0  # seconds
RSS_SLACK_KIB = 6 * 1024


def counts(log: str):
    return (len(re.findall(r"session started: user=", log)),
            len(re.findall(r"session ended: user=", log)))


def wait_all_ended(server, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        started, ended = counts(server.log())
        if started == ended:
            return started, ended
        time.sleep(0.1)
    return counts(server.log())


def churn(server, rnd, steps, budget, prefix):
    """Random moves of up to MAX_LIVE clients; the number done.  Guests, no
    session cap: every login must succeed (a failure raises out of here)."""
    live = []
    deadline = time.monotonic() + budget
    done = 0
    for step in range(steps):
        if time.monotonic() > deadline:
            break
        action = rnd.random()
        if not live or (action < 0.3 and len(live) < MAX_LIVE):
            user = "{}{}".format(prefix, rnd.randrange(MAX_LIVE * 2))  # duplicates kick
            live.append(SyncClient(server, user, timeout=5.0))
            continue
        client = live[rnd.randrange(len(live))]
        try:
            act(client, live, action, rnd)
        except OSError:  # its session had ended (replaced by a duplicate login)
            client.close()
            if client in live:
                live.remove(client)
        done += 1
    for client in live:
        if rnd.random() < 0.5:
            client.logout(timeout=2.0)
        else:
            client.close()
    return done


def act(client, live, action, rnd):
    """One random move of a live client; it leaves ``live`` when its session ends."""
    if action < 0.45:
        live.remove(client)
        client.logout(timeout=2.0)
    elif action < 0.55:
        live.remove(client)
        client.close()  # TCP drops: "disconnected"
    elif action < 0.6:
        live.remove(client)
        client.send(Kind.DISCONNECT)  # UDP logout
        client.tcp_events(2.0)
        client.close()
    elif action < 0.8:
        if not client.ping(timeout=0.5):  # replaced by a duplicate login, probably
            live.remove(client)
            client.close()
    elif action < 0.9:
        client.send(Kind.DATA, os.urandom(rnd.randrange(1, 1000)))
    else:
        client.message(os.urandom(rnd.randrange(1, 2000)))


@pytest.mark.timeout(180)
def test_soak_leaves_an_empty_registry_and_flat_memory(start_server):
    # Churn from one address faster than any honest client: its limits are not under test here.
    # TCP drops suspend sessions for a resume: a short grace ends them soon (and soaks that too).
    server = start_server("--max-pending-per-address", "200", "--hello-rate", "0",
                          "--hello-rate-per-subnet", "0", "--resume-grace", "1")
    pid = server.process.pid
    rnd = random.Random(2026)
    assert churn(server, rnd, 300, 10.0, "warm") > 50
    started, ended = wait_all_ended(server)
    assert started == ended and started > 0, (started, ended)
    before = vm_rss_kib(pid)
    done = churn(server, rnd, STEPS, BUDGET, "soak")
    started, ended = wait_all_ended(server)
    after = vm_rss_kib(pid)
    print("soak: steps", done, "sessions", started, "rss", before, after)
    assert done > 100
    assert started == ended, (started, ended)
    assert after - before < RSS_SLACK_KIB, (before, after)
    log = server.log()
    assert "Traceback" not in log and "unexpected error" not in log
    # Still serving.
    client = SyncClient(server, "last")
    assert client.ping()
    client.logout()
