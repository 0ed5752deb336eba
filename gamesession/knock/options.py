"""The knock options of ``twistd gamesession`` and the service they make.

``tap.Options`` includes :data:`OPT_PARAMETERS` and :data:`OPT_FLAGS` and
calls :func:`check_options` from ``postOptions``; ``makeService`` calls
:func:`make_knock_service` and hands its ``gate`` to the login factory.
"""

from __future__ import annotations

import random
from typing import Optional

from twisted.python import usage

from gamesession.knock import rule as k
from gamesession.knock.firewall import FirewallError, NftFirewall
from gamesession.knock.listeners import KnockService, makeKnockService


def _seconds(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError("must be a positive number of seconds")
    return number


def _count(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("must be at least 1")
    return number


OPT_PARAMETERS = [
    ["knock", None, None,
     "Gate the login port behind UDP knocks on these ports, in order: P1,P2,... or @FILE."],
    ["knock-random", None, None,
     "Knock on N (10-100) random unique ports from 1025-2024; written to --knock-file.", int],
    ["knock-file", None, None,
     "With --knock-random: where to write the sequence (mode 0600). Alone: read it from there."],
    ["knock-window", None, k.DEFAULT_WINDOW,
     "Seconds to complete the knock sequence.", _seconds],
    ["knock-grant", None, k.DEFAULT_GRANT,
     "Seconds a completed sequence lets that address open login connections.", _seconds],
    ["knock-secret", None, None,
     "Authenticated knocks: the 32-byte secret file (gamesession knock-secret --file PATH)."],
    ["knock-skew", None, k.DEFAULT_SKEW,
     "Authenticated knocks: accepted clock difference in seconds.", _seconds],
    ["knock-server-id", None, None,
     "Authenticated knocks: bind them to this server name (clients pass the same "
     "--knock-server-id), so servers sharing a secret refuse each other's knocks."],
    ["knock-future-skew", None, k.DEFAULT_FUTURE_SKEW,
     "Authenticated knocks: how many seconds ahead of the server's clock a knock may be dated "
     "(at most --knock-skew).", _seconds],
    ["knock-max-tracked", None, k.DEFAULT_MAX_TRACKED,
     "Most addresses tracked in progress, granted, and nonces remembered (each).", _count],
    ["knock-firewall", None, None,
     "Also gate in the kernel: 'nft' (needs root or CAP_NET_ADMIN)."],
]

OPT_FLAGS = [
    ["knock-reply", None,
     "Answer a completed knock sequence with the login port (never larger than the knock)."],
]


def parse_server_id(text: str) -> bytes:
    """A ``--knock-server-id``: 1-64 bytes of UTF-8 text, as the MAC covers it."""
    raw = text.encode("utf-8", "surrogateescape")
    if not 1 <= len(raw) <= k.MAX_SERVER_ID:
        raise k.KnockError(f"give 1 to {k.MAX_SERVER_ID} bytes of text")
    return raw


def login_port(endpoint: str) -> Optional[int]:
    """The port of a ``tcp:PORT...`` / ``ssl:PORT...`` endpoint string, if plain."""
    kind, _, rest = endpoint.partition(":")
    if kind not in ("tcp", "tcp6", "ssl"):
        return None
    for i, part in enumerate(rest.split(":")):
        key, eq, value = part.partition("=")
        if (eq and key == "port") or (not eq and i == 0):
            try:
                return int(value if eq else key)
            except ValueError:
                return None
    return None


def check_options(config: usage.Options, rng: Optional[random.Random] = None) -> None:
    """Validate the knock options; sets ``config["knock-sequence"]`` (or None)."""
    config["knock-sequence"] = None
    knocking = config["knock"] or config["knock-random"] is not None or config["knock-file"]
    if not knocking:
        for name in ("knock-secret", "knock-firewall", "knock-reply", "knock-server-id"):
            if config.get(name):
                raise usage.UsageError(f"--{name} needs --knock, --knock-random or --knock-file")
        return
    try:
        if config["knock-random"] is not None:
            if config["knock"]:
                raise usage.UsageError("give --knock or --knock-random, not both")
            if not config["knock-file"]:
                raise usage.UsageError(
                    "--knock-random needs --knock-file PATH: clients read the sequence there"
                )
            sequence = k.random_sequence(config["knock-random"], rng or random.SystemRandom())
            config["knock-write-file"] = True
        elif config["knock"]:
            if config["knock-file"]:
                raise usage.UsageError(
                    "--knock-file goes with --knock-random (or alone); use --knock @FILE to read one"
                )
            sequence = k.parse_ports(config["knock"])
        else:
            sequence = k.read_sequence_file(config["knock-file"])
        config["knock-secret-key"] = (
            k.load_secret(config["knock-secret"]) if config["knock-secret"] else None
        )
    except k.KnockError as e:
        raise usage.UsageError(str(e))
    config["knock-sequence"] = sequence
    config["knock-server-id-bytes"] = b""
    if config.get("knock-server-id"):
        if config["knock-secret-key"] is None:
            raise usage.UsageError("--knock-server-id needs --knock-secret (classic knocks carry no MAC)")
        try:
            config["knock-server-id-bytes"] = parse_server_id(config["knock-server-id"])
        except k.KnockError as e:
            raise usage.UsageError("--knock-server-id: {}".format(e))
    port = login_port(config["login"])
    if config["knock-firewall"] is not None:
        if config["knock-firewall"] != "nft":
            raise usage.UsageError("--knock-firewall takes one value: nft")
        if not port:
            raise usage.UsageError(
                "--knock-firewall needs a plain tcp:PORT --login endpoint to know which port to gate"
            )
        try:
            NftFirewall(port).check()
        except FirewallError as e:
            raise usage.UsageError(str(e))
    if config["knock-reply"] and not port:
        raise usage.UsageError("--knock-reply needs a tcp:PORT --login endpoint to announce")
    config["knock-login-port"] = port


def make_knock_service(config, reactor) -> Optional[KnockService]:
    """The knock service for checked options, or None when not knocking."""
    sequence = config.get("knock-sequence")
    if not sequence:
        return None
    if config.get("knock-write-file"):
        try:
            k.write_sequence_file(config["knock-file"], sequence)
        except OSError as e:
            raise usage.UsageError(
                "--knock-file {}: cannot write: {}".format(config["knock-file"], e.strerror or e)
            )
    port = config["knock-login-port"]
    knocker = k.Knocker(
        sequence,
        window=config["knock-window"],
        grant=config["knock-grant"],
        secret=config["knock-secret-key"],
        skew=config["knock-skew"],
        future_skew=config["knock-future-skew"],
        server_id=config.get("knock-server-id-bytes", b""),
        max_tracked=config["knock-max-tracked"],
        reply_port=port if config["knock-reply"] else None,
    )
    firewall = NftFirewall(port, reactor=reactor) if config["knock-firewall"] else None
    return makeKnockService(
        knocker, interface=config["interface"], clock=reactor, firewall=firewall
    )
