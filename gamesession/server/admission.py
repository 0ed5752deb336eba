"""``ILoginAdmission``: rules a login must pass beyond this process.

The login protocol asks ``admit(user)`` after the password checked out and
before the session opens; the registry reports every session it opens and
ends.  A single node admits everyone (``LocalAdmission``: its own registry
already applies ``--max-sessions`` and ``--duplicate-login``); a cluster
node (``gamesession.cluster.node.ClusterNode``) enforces one login per user
across the cluster.
"""

from twisted.internet import defer
from zope.interface import Interface, implementer


class ILoginAdmission(Interface):  # pragma: no mutate block (zope interface: no code to mutate)
    def admit(user, moving=False):
        """A Deferred firing with an opaque claim, or failing with ``registry.LoginRefused``.

        ``moving``: the login redeemed a transfer ticket (the user's session
        moves here from another node, which ends it with ``moved``).
        """

    def opened(session, claim):
        """The session that ``claim`` admitted is open."""

    def abandoned(user, claim):
        """``claim`` was admitted but no session opened (the client left, or a local limit refused)."""

    def ended(session, reason):
        """``session`` ended, for one of ``registry.END_REASONS``."""


@implementer(ILoginAdmission)
class LocalAdmission:
    """A single node: nothing beyond the registry's own rules."""

    def admit(self, user, moving=False):
        return defer.succeed(None)

    def opened(self, session, claim):
        pass

    def abandoned(self, user, claim):
        pass

    def ended(self, session, reason):
        pass


LOCAL = LocalAdmission()
