"""``RedisDirectory``: the cluster directory in Redis, over txredisapi.

Why txredisapi (README.md, "Running a cluster"): it is Twisted-native, so
directory calls are Deferreds on the reactor that already runs the server,
with no thread and no second event loop; it reconnects by itself with
exponential backoff (Twisted's ``ClientService``), speaks TLS through
Twisted's own TLS, does AUTH (with ACL user names), SELECT, pub/sub and
Lua scripts (EVALSHA with a fallback to EVAL after a Redis restart empties
the script cache).  redis-py is the better-maintained library, but its
asyncio client needs twistd to run on the asyncio reactor (``twistd
--reactor asyncio``, which the plugin cannot choose, and which would move
the per-packet path onto another reactor), and its synchronous client would
put every directory call and a blocking pub/sub reader on threads.  Nothing
here is on the per-packet path.

Every operation is one Lua script, so it is atomic: a claim checks the
holder, takes the user and PUBLISHes the replacement to the old holder's
node in one step.  (``restore`` alone runs as several scripts of at most
``RESTORE_CHUNK`` users, each safe by itself, so a node holding thousands of
users never blocks Redis for long.)  Each operation must be answered within
``timeout`` (1 s) or its caller gets ``DirectoryUnavailable`` (a login: 503);
only a reply later than ``HUNG_FACTOR`` timeouts drops the connection.  Time is Redis' own (``TIME``), so the nodes' clocks do
not need to agree.  Keys (``PREFIX`` is ``gamesession:``)::

    node:NAME           NodeRecord JSON, expires after the heartbeat TTL
    nodes               sorted set: node name -> expiry (ms), to sweep dead nodes
    user:USER           "NODE CLAIM"
    node-users:NAME     set of the users NAME holds
    room:ID             hash: the RoomRecord fields
    rooms:TYPE          set of room ids of a type
    node-rooms:NAME     set of the rooms NAME hosts
    room-reserved:ID    sorted set: ticket -> expiry (ms), seats reserved
    ticket:T            Ticket JSON, expires with the ticket
    events:NAME         pub/sub channel of NAME: {"type": "replaced", ...}

A node learns that the directory lost it (a Redis restart without
persistence, or an outage longer than the TTL) from its next heartbeat,
which says whether the node was still registered; it then re-registers what
it holds (``restore``).

One Redis (or a primary with replicas and Sentinel in front) serves a
cluster; Redis Cluster (sharding) is not supported: the scripts touch keys
they compute.
"""

import hashlib
import json
import secrets
import urllib.parse

import attrs
from twisted.internet import defer, endpoints, ssl
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gamesession.cluster.directory import (
    ROOM_FIELDS, ClaimResult, DirectoryUnavailable, IDirectory, NodeRecord, RoomRecord,
    SeatUnavailable, Ticket, UserRecord, check_node_name,
)

PREFIX = "gamesession:"
DEFAULT_TIMEOUT = 1.0

try:
    import txredisapi
except ImportError:  # pragma: no cover - checked by options.check_cluster_options
    txredisapi = None

MISSING_CLIENT = ("--cluster needs the Redis client txredisapi: "
                  "pip install 'gamesession[cluster]' (or pip install txredisapi)")


@attrs.frozen
class RedisAddress:
    """Where the directory is: parsed from ``redis://`` or ``rediss://`` (TLS) URLs."""

    host: str
    port: int = 6379
    db: int = 0
    tls: bool = False
    username: "str | None" = None
    password: "str | None" = attrs.field(default=None, repr=False)
    # PEM text of the CAs that may sign the server's certificate (rediss://); None: the system's.
    ca_pem: "str | None" = attrs.field(default=None, repr=False)

    def __str__(self):
        return "{}://{}:{}/{}".format("rediss" if self.tls else "redis",
                                      self.host, self.port, self.db)


def parse_redis_url(url: str, password: "str | None" = None) -> RedisAddress:
    """``redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`` (``rediss://`` for TLS); ValueError if not.

    ``password`` (from ``--cluster-password-file``) wins over one in the URL.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError("expected redis://HOST[:PORT][/DB] or rediss://..., got {!r}".format(url))
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError("bad port in {!r}".format(url))
    if not parts.hostname:
        raise ValueError("no host in {!r}".format(url))
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError("the path of {!r} must be a database number".format(url))
    if parts.query or parts.fragment:
        raise ValueError("{!r}: options in the URL are not supported".format(url))
    user = urllib.parse.unquote(parts.username) if parts.username else None
    secret = urllib.parse.unquote(parts.password) if parts.password is not None else None
    return RedisAddress(host=parts.hostname, port=port, db=int(path or 0),
                        tls=parts.scheme == "rediss", username=user or None,
                        password=password if password is not None else secret)


def tls_options(address: RedisAddress):
    """Client TLS options: the server's certificate must name ``address.host`` and chain to
    ``address.ca_pem`` (or to the system's trust store)."""
    if address.ca_pem is None:
        return ssl.optionsForClientTLS(address.host)
    certificates = [ssl.Certificate.loadPEM(block.encode("ascii"))
                    for block in split_pem(address.ca_pem)]
    if not certificates:
        raise ValueError("no certificate in the CA file")
    return ssl.optionsForClientTLS(address.host,
                                   trustRoot=ssl.trustRootFromCertificates(certificates))


def split_pem(text: str) -> list:
    """The ``-----BEGIN CERTIFICATE-----`` blocks of a PEM file."""
    end = "-----END CERTIFICATE-----"
    blocks = []
    for chunk in text.split(end)[:-1]:
        start = chunk.find("-----BEGIN CERTIFICATE-----")
        if start >= 0:
            blocks.append(chunk[start:] + end + "\n")
    return blocks


# -- the scripts ----------------------------------------------------------------------
# ARGV[1] is always the key prefix.  Helpers first, then each operation's body.

_LUA_HELPERS = r"""
local p = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function alive(name)
  return name and redis.call('EXISTS', p .. 'node:' .. name) == 1
end
local function holder(user)
  local v = redis.call('GET', p .. 'user:' .. user)
  if not v then return nil, nil end
  return string.match(v, '^(%S+) (%S+)$')
end
local function drop_room(rid)
  local rk = p .. 'room:' .. rid
  local info = redis.call('HMGET', rk, 'type', 'node')
  if info[1] then redis.call('SREM', p .. 'rooms:' .. info[1], rid) end
  if info[2] then redis.call('SREM', p .. 'node-rooms:' .. info[2], rid) end
  local rsv = p .. 'room-reserved:' .. rid
  for _, t in ipairs(redis.call('ZRANGE', rsv, 0, -1)) do
    redis.call('DEL', p .. 'ticket:' .. t)
  end
  redis.call('DEL', rk, rsv)
end
local function put_room(r)
  local rk = p .. 'room:' .. r.room_id
  local old = redis.call('HMGET', rk, 'type', 'node')
  if old[1] and old[1] ~= r.type then redis.call('SREM', p .. 'rooms:' .. old[1], r.room_id) end
  if old[2] and old[2] ~= r.node then redis.call('SREM', p .. 'node-rooms:' .. old[2], r.room_id) end
  redis.call('HSET', rk, 'room_id', r.room_id, 'type', r.type, 'node', r.node,
             'label', r.label, 'seats', r.seats, 'occupied', r.occupied, 'meta', r.meta,
             'listed', (r.listed == false) and '0' or '1')
  redis.call('SADD', p .. 'rooms:' .. r.type, r.room_id)
  redis.call('SADD', p .. 'node-rooms:' .. r.node, r.room_id)
end
local function drop_node(name)
  local nu = p .. 'node-users:' .. name
  for _, u in ipairs(redis.call('SMEMBERS', nu)) do
    local n = holder(u)
    if n == name then redis.call('DEL', p .. 'user:' .. u) end
  end
  local nr = p .. 'node-rooms:' .. name
  for _, rid in ipairs(redis.call('SMEMBERS', nr)) do drop_room(rid) end
  redis.call('DEL', nu, nr, p .. 'node:' .. name)
  redis.call('ZREM', p .. 'nodes', name)
end
"""

_SCRIPTS = {
    # ARGV: prefix, name, record json, ttl ms
    "heartbeat": r"""
local name, ttl = ARGV[2], tonumber(ARGV[4])
local now = now_ms()
local known = redis.call('EXISTS', p .. 'node:' .. name)
redis.call('SET', p .. 'node:' .. name, ARGV[3], 'PX', ttl)
redis.call('ZADD', p .. 'nodes', now + ttl, name)
for _, d in ipairs(redis.call('ZRANGEBYSCORE', p .. 'nodes', '-inf', now, 'LIMIT', 0, 16)) do
  if d ~= name and not alive(d) then drop_node(d) end
end
return known
""",
    "deregister": r"""
drop_node(ARGV[2])
return 1
""",
    "live_nodes": r"""
local out = {}
for _, n in ipairs(redis.call('ZRANGE', p .. 'nodes', 0, -1)) do
  local v = redis.call('GET', p .. 'node:' .. n)
  if v then table.insert(out, v) end
end
return out
""",
    # ARGV: prefix, user, node, claim, policy -> {granted(-1: caller not live), prev node, prev claim}
    "claim_user": r"""
local user, node, claim, policy = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if not alive(node) then return {-1} end
local pn, pc = holder(user)
if pn and not alive(pn) then pn = nil end
if pn and policy == 'reject' then return {0, pn, pc} end
redis.call('SET', p .. 'user:' .. user, node .. ' ' .. claim)
redis.call('SADD', p .. 'node-users:' .. node, user)
if not pn then return {1} end
if pn ~= node then
  redis.call('SREM', p .. 'node-users:' .. pn, user)
  local event = {type = 'replaced', user = user, claim = pc, by = node}
  if policy == 'move' then event.reason = 'moved' end
  redis.call('PUBLISH', p .. 'events:' .. pn, cjson.encode(event))
end
return {1, pn, pc}
""",
    "release_user": r"""
local user, node, claim = ARGV[2], ARGV[3], ARGV[4]
local n, c = holder(user)
if n == node and c == claim then
  redis.call('DEL', p .. 'user:' .. user)
  redis.call('SREM', p .. 'node-users:' .. node, user)
  return 1
end
return 0
""",
    "user_node": r"""
local n, c = holder(ARGV[2])
if n and alive(n) then return {n, c} end
return {}
""",
    # restore, in steps that each keep Redis busy only briefly:
    # ARGV: prefix, node, user1, claim1, user2, claim2, ... -> users another live node holds
    "restore_users": r"""
local node = ARGV[2]
local conflicts = {}
for i = 3, #ARGV, 2 do
  local u, c = ARGV[i], ARGV[i + 1]
  local n, pc = holder(u)
  if n and n ~= node and alive(n) then
    table.insert(conflicts, u)
  elseif not (n == node and pc ~= c) then
    redis.call('SET', p .. 'user:' .. u, node .. ' ' .. c)
    redis.call('SADD', p .. 'node-users:' .. node, u)
  end
end
return conflicts
""",
    "node_users": r"""
return redis.call('SMEMBERS', p .. 'node-users:' .. ARGV[2])
""",
    # ARGV: prefix, node, user... : the node no longer holds these users
    "forget_users": r"""
local node = ARGV[2]
for i = 3, #ARGV do
  local u = ARGV[i]
  if holder(u) == node then redis.call('DEL', p .. 'user:' .. u) end
  redis.call('SREM', p .. 'node-users:' .. node, u)
end
return 1
""",
    # ARGV: prefix, node, rooms json: the rooms the node hosts, all of them
    "restore_rooms": r"""
local node = ARGV[2]
local rooms = cjson.decode(ARGV[3])
local keep = {}
for _, r in ipairs(rooms) do keep[r.room_id] = true end
for _, rid in ipairs(redis.call('SMEMBERS', p .. 'node-rooms:' .. node)) do
  if not keep[rid] then drop_room(rid) end
end
for _, r in ipairs(rooms) do put_room(r) end
return 1
""",
    "register_room": r"""
put_room(cjson.decode(ARGV[2]))
return 1
""",
    # ARGV: prefix, room id, field, value, ...
    "update_room": r"""
local rk = p .. 'room:' .. ARGV[2]
if redis.call('EXISTS', rk) == 0 then return {} end
for i = 3, #ARGV, 2 do redis.call('HSET', rk, ARGV[i], ARGV[i + 1]) end
return redis.call('HGETALL', rk)
""",
    "remove_room": r"""
drop_room(ARGV[2])
return 1
""",
    "list_rooms": r"""
local set = p .. 'rooms:' .. ARGV[2]
local out = {}
for _, rid in ipairs(redis.call('SMEMBERS', set)) do
  local fields = redis.call('HGETALL', p .. 'room:' .. rid)
  if #fields == 0 then
    redis.call('SREM', set, rid)
  else
    local info = redis.call('HMGET', p .. 'room:' .. rid, 'node', 'listed')
    if info[2] ~= '0' and alive(info[1]) then table.insert(out, fields) end
  end
end
return out
""",
    # ARGV: prefix, room id, user, ttl ms, ticket -> {status, node}
    "reserve_seat": r"""
local rid, user, ttl, ticket = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local rk = p .. 'room:' .. rid
local info = redis.call('HMGET', rk, 'node', 'seats', 'occupied')
if not info[1] then return {'no_such_room'} end
if not alive(info[1]) then return {'node_gone'} end
local now = now_ms()
local rsv = p .. 'room-reserved:' .. rid
redis.call('ZREMRANGEBYSCORE', rsv, '-inf', now)
if tonumber(info[3]) + redis.call('ZCARD', rsv) >= tonumber(info[2]) then return {'room_full'} end
redis.call('ZADD', rsv, now + ttl, ticket)
if redis.call('PTTL', rsv) < ttl then redis.call('PEXPIRE', rsv, ttl) end
redis.call('SET', p .. 'ticket:' .. ticket,
           cjson.encode({user = user, room_id = rid, node = info[1]}), 'PX', ttl)
redis.call('PUBLISH', p .. 'events:' .. info[1],
           cjson.encode({type = 'reserved', room_id = rid, ticket = ticket, ttl_ms = ttl}))
return {'ok', info[1]}
""",
    # ARGV: prefix, ticket, node -> {json, ms left} or {}
    "redeem_ticket": r"""
local tk = p .. 'ticket:' .. ARGV[2]
local v = redis.call('GET', tk)
if not v then return {} end
local t = cjson.decode(v)
if t.node ~= ARGV[3] then return {} end
local left = redis.call('PTTL', tk)
redis.call('DEL', tk)
redis.call('ZREM', p .. 'room-reserved:' .. t.room_id, ARGV[2])
return {v, left}
""",
}

SCRIPTS = {name: _LUA_HELPERS + body for name, body in _SCRIPTS.items()}
SCRIPT_HASHES = {name: hashlib.sha1(script.encode("utf-8")).hexdigest()
                 for name, script in SCRIPTS.items()}
# A reply later than this many operation timeouts means Redis hangs: the
# connection is dropped and made again.  Shorter waits only fail the caller.
HUNG_FACTOR = 5
RESTORE_CHUNK = 500


def _pairs(flat) -> dict:
    return dict(zip(flat[0::2], flat[1::2]))


def _room(flat) -> RoomRecord:
    return RoomRecord.from_json(_pairs(flat))


def _ms(seconds: float) -> int:
    return max(1, int(round(seconds * 1000)))


@implementer(IDirectory)
class RedisDirectory:
    """The directory in one Redis database; see the module docstring for the keys.

    ``connect()`` starts the connections (they reconnect by themselves, with
    backoff, after an outage).  While no connection is up every operation
    fails at once with ``DirectoryUnavailable``; one that gets no answer
    within ``timeout`` seconds fails the same way.
    """

    log = Logger()

    def __init__(self, address: RedisAddress, reactor, timeout: float = DEFAULT_TIMEOUT,
                 prefix: str = PREFIX, token=secrets.token_urlsafe,
                 initial_delay: float = 0.2, max_delay: float = 2.0):
        if txredisapi is None:
            raise RuntimeError(MISSING_CLIENT)
        self.address = address
        self.reactor = reactor
        self.timeout = timeout
        self.prefix = prefix
        self.token = token
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.listeners = {}  # channel -> [on_event]
        # Counts the (re)subscriptions of the events connection: events sent
        # while it was down are lost, so a node restores when this moves.
        self.events_epoch = 0
        self.commands = None
        self.events = None

    # -- connections --------------------------------------------------------------------

    def _endpoint(self):
        address = self.address
        endpoint = endpoints.HostnameEndpoint(self.reactor, address.host, address.port,
                                              timeout=self.timeout)
        if address.tls:
            endpoint = endpoints.wrapClientTLS(tls_options(address), endpoint)
        return endpoint

    def _factory(self, protocol=None):
        address = self.address
        # AUTH and SELECT are ours (_Handshake), not txredisapi's.
        factory = txredisapi.RedisFactory(
            str(address), None, 1, isLazy=True, charset="utf-8",
            replyTimeout=self.timeout * HUNG_FACTOR, convertNumbers=False)
        factory.deferred.addErrback(lambda _: None)  # connection failures: retried, not "unhandled"
        factory.initialDelay = self.initial_delay
        factory.maxDelay = self.max_delay
        factory.protocol = protocol
        factory.directory = self
        return factory

    def connect(self):
        """Start connecting (commands and events); returns at once."""
        if self.commands is None:
            self.commands = self._factory(_CommandProtocol)
            self.commands.startConnecting(self._endpoint())
            self.events = self._factory(_EventListener)
            self.events.startConnecting(self._endpoint())
        return self

    @property
    def connected(self) -> bool:
        """Whether the command connection is up (events reconnect on their own)."""
        return self.commands is not None and self.commands.size > 0

    def _run(self, name, *args):
        if not self.connected:
            return defer.fail(DirectoryUnavailable())
        try:
            d = self.commands.handler.eval(SCRIPTS[name], [], [self.prefix] + [str(a) for a in args])
        except Exception as e:  # txredisapi raises ConnectionError synchronously when not connected
            return defer.fail(self._unavailable(e))
        d.addTimeout(self.timeout, self.reactor)
        d.addErrback(self._translate)
        return d

    @staticmethod
    def _unavailable(error) -> DirectoryUnavailable:
        return DirectoryUnavailable("cluster directory unavailable ({})".format(
            type(error).__name__))

    def _translate(self, failure):
        if failure.check(txredisapi.ConnectionError, defer.TimeoutError, defer.CancelledError,
                         ConnectionError):
            raise DirectoryUnavailable()
        if failure.check(txredisapi.RedisError):
            # LOADING, READONLY after a failover, OOM, NOAUTH...: Redis cannot serve us now.
            self.log.warn("cluster directory error: {error}", error=failure.getErrorMessage())
            raise DirectoryUnavailable("cluster directory unavailable ({})".format(
                failure.getErrorMessage()[:80]))
        return failure

    # -- nodes --------------------------------------------------------------------------

    def heartbeat(self, node: NodeRecord, ttl: float):
        record = json.dumps(node.to_json(), sort_keys=True)
        return self._run("heartbeat", node.name, record, _ms(ttl)).addCallback(
            lambda known: bool(int(known)))

    def deregister(self, name):
        return self._run("deregister", check_node_name(name)).addCallback(lambda _: None)

    def live_nodes(self):
        d = self._run("live_nodes")
        d.addCallback(lambda rows: sorted((NodeRecord.from_json(json.loads(r)) for r in rows),
                                          key=lambda r: r.name))
        return d

    # -- users --------------------------------------------------------------------------

    def claim_user(self, user, node, claim, policy):
        def decided(reply):
            granted = int(reply[0])
            if granted < 0:
                raise DirectoryUnavailable("cluster directory unavailable (node not registered)")
            previous = UserRecord(user, reply[1], reply[2]) if len(reply) > 1 else None
            return ClaimResult(bool(granted), previous)
        return self._run("claim_user", user, node, claim, policy).addCallback(decided)

    def release_user(self, user, node, claim):
        return self._run("release_user", user, node, claim).addCallback(lambda r: bool(int(r)))

    def user_node(self, user):
        return self._run("user_node", user).addCallback(
            lambda r: UserRecord(user, r[0], r[1]) if r else None)

    def restore(self, node, users, rooms):
        return defer.ensureDeferred(self._restore(node, users, rooms))

    async def _restore(self, node, users, rooms):
        # Steps of RESTORE_CHUNK users each, so a node holding thousands of
        # users never blocks Redis for long; each step is safe on its own.
        conflicts = []
        ordered = sorted(users.items())
        for start in range(0, len(ordered), RESTORE_CHUNK):
            flat = [item for pair in ordered[start:start + RESTORE_CHUNK] for item in pair]
            conflicts.extend(await self._run("restore_users", node, *flat))
        stale = sorted(set(await self._run("node_users", node)) - set(users))
        for start in range(0, len(stale), RESTORE_CHUNK):
            await self._run("forget_users", node, *stale[start:start + RESTORE_CHUNK])
        await self._run("restore_rooms", node, json.dumps([room.to_json() for room in rooms]))
        return conflicts

    # -- rooms --------------------------------------------------------------------------

    def register_room(self, room: RoomRecord):
        return self._run("register_room", json.dumps(room.to_json())).addCallback(lambda _: None)

    def update_room(self, room_id, **fields):
        unknown = set(fields) - set(ROOM_FIELDS)
        if unknown:
            raise TypeError("update_room: no such field(s) {}".format(", ".join(sorted(unknown))))
        flat = [item for field, value in sorted(fields.items())
                for item in (field, ("1" if value else "0") if isinstance(value, bool) else value)]
        return self._run("update_room", room_id, *flat).addCallback(
            lambda r: _room(r) if r else None)

    def remove_room(self, room_id):
        return self._run("remove_room", room_id).addCallback(lambda _: None)

    def list_rooms(self, room_type):
        return self._run("list_rooms", room_type).addCallback(
            lambda rows: sorted((_room(r) for r in rows), key=lambda r: r.room_id))

    def reserve_seat(self, room_id, user, ttl):
        ticket = self.token(16)

        def reserved(reply):
            if reply[0] != "ok":
                raise SeatUnavailable(reply[0])
            return Ticket(ticket, user, room_id, reply[1], ttl)
        return self._run("reserve_seat", room_id, user, _ms(ttl), ticket).addCallback(reserved)

    def redeem_ticket(self, ticket, node):
        def redeemed(reply):
            if not reply:
                return None
            data = json.loads(reply[0])
            return Ticket(ticket, data["user"], data["room_id"], data["node"],
                          max(0, int(reply[1])) / 1000.0)
        return self._run("redeem_ticket", ticket, node).addCallback(redeemed)

    # -- events -------------------------------------------------------------------------

    def _channel(self, node):
        return self.prefix + "events:" + node

    def subscribe(self, node, on_event):
        channel = self._channel(node)
        first = channel not in self.listeners
        self.listeners.setdefault(channel, []).append(on_event)
        if first and self.events is not None:
            for connection in list(self.events.pool):
                connection.subscribe([channel])
        return defer.succeed(None)

    def _resubscribed(self, _):
        self.events_epoch += 1

    def _message(self, channel, message):
        try:
            event = json.loads(message)
        except (TypeError, ValueError):
            self.log.warn("ignoring a malformed directory event on {channel}", channel=channel)
            return
        if not isinstance(event, dict):
            return
        for on_event in list(self.listeners.get(channel, ())):
            on_event(event)

    def close(self):
        stops = [factory.disconnect() for factory in (self.commands, self.events)
                 if factory is not None]
        self.commands = self.events = None
        return defer.gatherResults(stops, consumeErrors=True).addCallback(lambda _: None)


class _Handshake:
    """AUTH and SELECT sent by us, pipelined ahead of anything else on a new connection.

    txredisapi would do them itself, but it stops reconnecting for good when
    AUTH fails, even when the connection merely dropped during it (a Redis
    restart).  Here a refused AUTH or SELECT is logged and the connection
    closed, and the usual backoff tries again.
    """

    log = Logger()

    def connectionMade(self):
        d = super().connectionMade()  # no password or db given to txredisapi: ready at once
        address = self.factory.directory.address
        if address.password is not None:
            self.auth(address.password, address.username).addBoth(self._checked, "AUTH")
        if address.db:
            self.select(address.db).addBoth(self._checked, "SELECT {}".format(address.db))
        self.ready()
        return d

    def _checked(self, result, what):
        error = result.value if isinstance(result, Failure) else result
        if isinstance(error, Exception) and self.connected:
            self.log.warn("cluster directory {address} refused {what}: {error}",
                          address=str(self.factory.directory.address), what=what, error=error)
            self.transport.loseConnection()

    def ready(self):
        """Called once the handshake is on its way: queue what the connection needs."""


if txredisapi is not None:
    class _CommandProtocol(_Handshake, txredisapi.RedisProtocol):
        """The command connection: loads the scripts as soon as it is up.

        Each operation is then an EVALSHA of a few dozen bytes, not the
        script's text (EVAL, with a fallback to it after a NOSCRIPT, is what
        txredisapi does for a script it has not seen on this connection).
        """

        def ready(self):
            for name, script in SCRIPTS.items():
                self.script_load(script).addErrback(lambda f: None)
                self.script_hashes.add(SCRIPT_HASHES[name])

    class _EventListener(_Handshake, txredisapi.SubscriberProtocol):
        """The pub/sub connection: (re)subscribes to the directory's channels on each connect."""

        def ready(self):
            directory = self.factory.directory
            channels = list(directory.listeners)
            if channels:
                self.subscribe(channels).addCallbacks(directory._resubscribed, lambda f: None)

        def messageReceived(self, pattern, channel, message):
            self.factory.directory._message(channel, message)
else:  # pragma: no cover
    _CommandProtocol = _EventListener = None
