"""The interface a game implements to receive sessions and their messages.

The server calls an ``IGameApplication`` for each session event; the game
answers through the ``Session`` it is given (``send_datagram`` over UDP,
unreliable; ``send_message`` over the TCP control channel, reliable).  Select
one with ``--app package.module.Class`` (a class whose constructor takes no
arguments, or an object); the default echoes.

A game that needs the other sessions or the rooms defines an optional
``attach(server)`` method: the server calls it once, before any session,
with a ``GameServer`` (``server.sessions.find(user)``,
``server.sessions.all()``, ``server.rooms``).  Room handlers reach the same
object as ``room.server``.
"""

from zope.interface import Attribute, Interface, implementer


class ISession(Interface):
    """What a game sees of one logged-in player."""

    user = Attribute("The user name the player logged in with.")
    avatar = Attribute("The avatar the cred realm returned (an IPlayer).")
    address = Attribute("The UDP (host, port) learned from authenticated packets, or None.")
    suspended = Attribute("True while its TCP connection is gone and a resume may follow "
                          "(--resume-grace); UDP still works, TCP messages wait.")

    def send_datagram(payload):
        """Send bytes over UDP (unreliable); False if no UDP address is known yet."""

    def send_message(payload):
        """Send bytes over the TCP control channel (reliable, in order)."""

    def kick():
        """End the session; the client is told it was kicked."""


class ISessionDirectory(Interface):
    """The sessions logged in now, for game code and room handlers."""

    def find(user):
        """The ISession of ``user``, or None if the user is not logged in."""

    def all():
        """Every ISession logged in now (a new list)."""

    def __len__():
        """How many sessions are logged in."""


@implementer(ISessionDirectory)
class SessionDirectory:
    """``ISessionDirectory`` over a SessionRegistry's user index."""

    def __init__(self, registry):
        self._registry = registry

    def find(self, user):
        return self._registry.by_user.get(user)

    def all(self):
        return list(self._registry.by_user.values())

    def __len__(self):
        return len(self._registry.by_user)

    def __iter__(self):
        return iter(self.all())


class GameServer:
    """What game code sees of the server: ``sessions`` (ISessionDirectory) and ``rooms``.

    ``rooms`` is the ``RoomManager``: ``find(room_id)``, ``of_type(type)``,
    ``all()``, ``rooms_of(session)``.  ``clock`` is the server's IReactorTime.
    """

    def __init__(self, registry, rooms):
        self.sessions = SessionDirectory(registry)
        self.rooms = rooms
        self.clock = registry.clock


def attach_application(application, server: GameServer) -> None:
    """Call the application's optional ``attach(server)``."""
    attach = getattr(application, "attach", None)
    if callable(attach):
        attach(server)


class IGameApplication(Interface):
    """A game. Optional, outside the interface: ``attach(server)`` (see the module doc)."""

    def session_started(session):
        """A player logged in; ``session`` provides ISession."""

    def session_ended(session, reason):
        """The session ended: logout, disconnected, timeout, kicked, replaced or shutdown."""

    def datagram_received(session, payload):
        """An authenticated, fresh application datagram arrived over UDP."""

    def message_received(session, payload):
        """An application message arrived over the TCP control channel."""


class IResumeListener(Interface):
    """Optional methods of an application told about suspensions (``--resume-grace``).

    An application without them sees only session_started/session_ended: a
    suspended session that never resumes ends with ``disconnected``.
    """

    def session_suspended(session):
        """The session's TCP connection closed without a logout; it may resume."""

    def session_resumed(session):
        """The session resumed on a new connection: same session object, new token."""


@implementer(IGameApplication)
class EchoApplication:
    """Sends every message back on the channel it came in on."""

    def session_started(self, session):
        pass

    def session_ended(self, session, reason):
        pass

    def datagram_received(self, session, payload):
        session.send_datagram(payload)

    def message_received(self, session, payload):
        session.send_message(payload)


class AppImportError(Exception):
    """``--app`` names nothing importable; the message carries the underlying error."""


def import_dotted(dotted: str, path=None):
    """The object a dotted name ``package.module.Name`` refers to.

    Imports the longest prefix that is a module, then follows attributes.  The
    current directory is searched first, as ``python -m`` does (twistd does not
    put it on ``sys.path``), then ``path`` (default ``sys.path``).  An error
    raised while importing a module that exists (its own missing dependency,
    a SyntaxError...) is reported as it is, not as "not found".
    """
    import importlib
    import os
    import sys

    if path is None:
        path = sys.path
    cwd = os.getcwd()
    if cwd not in path and "" not in path:
        path.insert(0, cwd)
    parts = dotted.split(".")
    if not all(parts):
        raise AppImportError("{!r} is not a dotted name such as mygame.server.Game".format(dotted))
    obj = None
    for i in range(len(parts), 0, -1):
        module_name = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name is not None and (module_name == e.name or module_name.startswith(e.name + ".")):
                continue  # this prefix is no module: try a shorter one
            raise AppImportError("importing {} failed: {}: {}".format(
                module_name, type(e).__name__, e))
        except Exception as e:
            raise AppImportError("importing {} failed: {}: {}".format(
                module_name, type(e).__name__, e))
        break
    else:
        raise AppImportError("no module named {!r} (searched the current directory {} first,"
                             " then sys.path)".format(parts[0], cwd))
    for name in parts[i:]:
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise AppImportError("{} has no attribute {!r}".format(
                ".".join(parts[:i]), name))
        i += 1
    return obj


def load_application(dotted: str):
    """Resolve ``--app``: a dotted name of a class (instantiated) or an object.

    See ``import_dotted`` for where modules are looked for.
    """
    target = import_dotted(dotted)
    app = target() if isinstance(target, type) else target
    if not IGameApplication.providedBy(app):
        missing = [
            name for name in IGameApplication.names() if not callable(getattr(app, name, None))
        ]
        if missing:
            raise TypeError("{} lacks {}".format(dotted, ", ".join(missing)))
    return app
