"""The ``--cluster`` options of ``twistd gamesession`` and the node they make.

``tap.Options`` includes :data:`OPT_PARAMETERS` and calls
:func:`check_options` from ``postOptions``; ``makeService`` calls
:func:`make_cluster_node`, which returns None without ``--cluster``.
"""

import re
import socket

import attrs
from twisted.python import usage

from gamesession.client.address import split_host_port
from gamesession.cluster.directory import (
    DEFAULT_NODE_TTL, DEFAULT_TICKET_TTL, NodeRecord, check_node_name,
)


def _ttl(value):
    number = float(value)
    if not number >= 0.5:
        raise ValueError("must be at least 0.5 seconds")
    return number


OPT_PARAMETERS = [
    ["cluster", None, None,
     "Join a cluster whose directory is this Redis: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] "
     "or rediss://... (TLS). All nodes must share one --key-file."],
    ["cluster-password-file", None, None,
     "With --cluster: read the Redis password from this file (wins over one in the URL)."],
    ["cluster-ca", None, None,
     "With a rediss:// --cluster: PEM file of the CA(s) that sign Redis' certificate "
     "(default: the system's trust store)."],
    ["node-name", None, None,
     "With --cluster: this node's name, unique in the cluster (default: HOSTNAME:LOGINPORT)."],
    ["advertise", None, None,
     "With --cluster: the login address clients of other nodes are sent to, HOST[:PORT] "
     "(default: this host's name and the login port)."],
    ["node-ttl", None, DEFAULT_NODE_TTL,
     "With --cluster: seconds after its last heartbeat that a node counts as dead.", _ttl],
    ["ticket-ttl", None, DEFAULT_TICKET_TTL,
     "With --cluster: seconds a transfer ticket (a seat reserved on another node for a "
     "room_redirect) stays valid.", _ttl],
]

_PORT = re.compile(r"\A(?:tcp6?|ssl):(?:port=)?(\d+)(?::|\Z)")


def login_port(endpoint: str) -> "int | None":
    """The port of a ``tcp:PORT...``/``ssl:PORT...`` login endpoint, or None."""
    match = _PORT.match(endpoint)
    if match:
        return int(match.group(1))
    match = re.search(r"(?:\A|:)port=(\d+)(?::|\Z)", endpoint)
    return int(match.group(1)) if match else None


def check_options(config) -> None:
    """Validate the cluster options in place; UsageError (one line) when wrong."""
    config["cluster-address"] = None
    if config["cluster"] is None:
        for option in ("cluster-password-file", "cluster-ca", "node-name", "advertise"):
            if config[option] is not None:
                raise usage.UsageError("--{} needs --cluster".format(option))
        return
    from gamesession.cluster import redisdir

    if redisdir.txredisapi is None:
        raise usage.UsageError(redisdir.MISSING_CLIENT)
    password = None
    if config["cluster-password-file"] is not None:
        try:
            with open(config["cluster-password-file"], encoding="utf-8") as f:
                password = f.read().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as e:
            raise usage.UsageError("--cluster-password-file {}: {}".format(
                config["cluster-password-file"], getattr(e, "strerror", None) or e))
        if not password:
            raise usage.UsageError("--cluster-password-file {} is empty".format(
                config["cluster-password-file"]))
    try:
        address = redisdir.parse_redis_url(config["cluster"], password)
    except ValueError as e:
        raise usage.UsageError("--cluster: {}".format(e))
    config["cluster-address"] = _with_tls(address, config["cluster-ca"])
    port = login_port(config["login"])
    host = socket.gethostname()
    if config["node-name"] is None:
        if port is None:
            raise usage.UsageError("--cluster with a --login endpoint without a port needs --node-name")
        config["node-name"] = "{}:{}".format(host, port)
    try:
        check_node_name(config["node-name"])
    except ValueError as e:
        raise usage.UsageError("--node-name: {}".format(e))
    try:
        advertised = split_host_port(config["advertise"] or host, port or 0)
    except ValueError:
        raise usage.UsageError("--advertise must be HOST[:PORT], got {!r}".format(config["advertise"]))
    if not advertised[0] or not 0 < advertised[1] < 65536:
        raise usage.UsageError("--advertise: give HOST:PORT (the login port is not known)")
    config["advertise-address"] = advertised


def _with_tls(address, ca_file):
    """The address with its CA file read in; checks that TLS can work here."""
    if ca_file is not None and not address.tls:
        raise usage.UsageError("--cluster-ca needs a rediss:// --cluster")
    if not address.tls:
        return address
    try:
        import OpenSSL  # noqa: F401  (Twisted's TLS needs pyOpenSSL and service_identity)
        import service_identity  # noqa: F401
    except ImportError:
        raise usage.UsageError("rediss:// needs TLS support: pip install 'twisted[tls]'")
    if ca_file is None:
        return address
    from gamesession.cluster import redisdir

    try:
        with open(ca_file, encoding="ascii") as f:
            address = attrs.evolve(address, ca_pem=f.read())
        redisdir.tls_options(address)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise usage.UsageError("--cluster-ca {}: {}".format(ca_file, getattr(e, "strerror", None) or e))
    except Exception as e:  # OpenSSL.crypto.Error and friends: not a certificate
        raise usage.UsageError("--cluster-ca {}: not a PEM certificate ({})".format(
            ca_file, type(e).__name__))
    return address


def make_cluster_node(config, registry, reactor):
    """The ``ClusterNode`` for ``--cluster`` (already the registry's admission), or None."""
    if config["cluster"] is None:
        return None
    from gamesession.cluster.node import ClusterNode
    from gamesession.cluster.redisdir import RedisDirectory

    address = config["cluster-address"]
    host, port = config["advertise-address"]
    record = NodeRecord(config["node-name"], host, port, config["public-udp-port"])
    node = ClusterNode(RedisDirectory(address, reactor), record, registry, reactor,
                       ttl=config["node-ttl"], duplicate_login=config["duplicate-login"],
                       label=str(address))
    registry.admission = node
    from gamesession.cluster.rooms import ClusterRooms

    node.cluster_rooms = ClusterRooms(node, registry.rooms, ticket_ttl=config["ticket-ttl"])
    return node


def accept_tickets(node, portal) -> None:
    """Let ``portal`` log in ``ticket_login``s by redeeming their tickets through ``node``."""
    from gamesession.cluster.rooms import TicketChecker

    portal.registerChecker(TicketChecker(node))
