"""twisted.cred pieces: the player avatar, its realm and the guest checker."""

import attrs
from twisted.cred.checkers import ICredentialsChecker, InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import succeed
from zope.interface import Attribute, Interface, implementer


class IPlayer(Interface):
    name = Attribute("The name the player logged in as.")


@implementer(IPlayer)
@attrs.define
class Player:
    name: str


def _no_logout():
    """Players hold no resources in the realm; one shared callable for all."""


@implementer(IRealm)
class PlayerRealm:
    """Gives every authenticated account a Player avatar."""

    def requestAvatar(self, avatarId, mind, *interfaces):
        if IPlayer not in interfaces:
            raise NotImplementedError("PlayerRealm only provides IPlayer")
        name = avatarId.decode("utf-8") if isinstance(avatarId, bytes) else avatarId
        return IPlayer, Player(name), _no_logout


@implementer(ICredentialsChecker)
class GuestChecker:
    """Lets anyone in under the name they give, with any password.

    Used when the server runs with no ``--auth``; it logs a warning then.
    """

    credentialInterfaces = (IUsernamePassword,)

    def requestAvatarId(self, credentials):
        return succeed(credentials.username)


@implementer(ICredentialsChecker)
class TextOrBytesChecker:
    """Hands a checker credentials in the string types it stores.

    Twisted's own checkers disagree: ``--auth memory:`` keeps ``str`` names
    and passwords, the in-memory checker's constructor keeps ``bytes`` names
    with passwords as given, ``--auth file:`` and ``unix`` compare ``bytes``.
    Logins arrive as text.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, checker):
        self.checker = checker

    def requestAvatarId(self, credentials):
        user, password = credentials.username, credentials.password
        if isinstance(self.checker, InMemoryUsernamePasswordDatabaseDontUse):
            users = self.checker.users
            name = user if user in users else _utf8(user)
            if name in users and not isinstance(users[name], str):
                password = _utf8(password)
            user = name
        else:
            user, password = _utf8(user), _utf8(password)
        return self.checker.requestAvatarId(UsernamePassword(user, password))


def _utf8(value):
    return value.encode("utf-8") if isinstance(value, str) else value


def make_portal(checkers) -> Portal:
    """A portal over the given checkers, or over GuestChecker when none."""
    checkers = [TextOrBytesChecker(c) for c in checkers]
    return Portal(PlayerRealm(), checkers or [GuestChecker()])


class ITransferTicket(Interface):
    """Credentials of a ``ticket_login``: a transfer ticket from another node of the cluster."""

    ticket = Attribute("The ticket text from the room_redirect.")
    redeemed = Attribute("The cluster.directory.Ticket once a checker redeemed it, else None.")


@implementer(ITransferTicket)
class TransferTicket:
    """A transfer ticket offered in place of a password (checked by cluster.rooms.TicketChecker)."""

    def __init__(self, ticket: str):
        self.ticket = ticket
        self.redeemed = None
