"""Kernel knock gate: an nftables set of granted addresses.

With ``--knock-firewall nft`` the login port becomes invisible: a rule drops
TCP SYNs to it unless the source is in a set whose elements time out when
the grant does, so a scanner gets no SYN-ACK at all.  Established
connections are untouched (only SYNs are matched).  The in-process gate
stays on behind it.

The table is created atomically at start (replacing a stale one left by a
crash) and deleted at stop.  Grants are batched: at most one ``nft``
process runs at a time, with every grant that arrived meanwhile.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from typing import Callable, List, Optional

from twisted.application import service
from twisted.internet import utils
from twisted.logger import Logger

from gamesession.knock.rule import canonical_host

DEFAULT_TABLE = "gamesession"
MAX_PENDING = 4096
BATCH = 256  # grants per nft process: keeps its one argv string far below 128 KiB


class FirewallError(Exception):
    """The kernel gate cannot be set up; the message says what to do."""


def ruleset(table: str, login_port: int) -> str:
    """The nft script that (re)creates the gate's table in one transaction."""
    syn = "tcp flags & (syn | ack) == syn"
    return f"""\
add table inet {table}
delete table inet {table}
table inet {table} {{
    set granted_v4 {{ type ipv4_addr; flags timeout; }}
    set granted_v6 {{ type ipv6_addr; flags timeout; }}
    chain input {{
        type filter hook input priority -10; policy accept;
        tcp dport {login_port} {syn} ip saddr @granted_v4 accept
        tcp dport {login_port} {syn} ip6 saddr @granted_v6 accept
        tcp dport {login_port} {syn} counter drop
    }}
}}
"""


def grant_commands(table: str, host: str, seconds: float) -> str:
    """Add ``host`` with a fresh timeout (add+delete+add refreshes an existing one)."""
    addr = ipaddress.ip_address(canonical_host(host))
    name = "granted_v4" if addr.version == 4 else "granted_v6"
    timeout = max(1, int(round(seconds)))
    element = f"inet {table} {name} {{ {addr} }}"
    return (
        f"add element {element}\n"
        f"delete element {element}\n"
        f"add element inet {table} {name} {{ {addr} timeout {timeout}s }}\n"
    )


def _explain(nft: str, stderr: str) -> str:
    detail = stderr.strip() or "no output"
    if "Operation not permitted" in stderr or "Permission denied" in stderr:
        return (
            f"--knock-firewall nft needs root or CAP_NET_ADMIN ({nft} said: {detail});"
            " run as root, give the process CAP_NET_ADMIN (docker: --cap-add NET_ADMIN),"
            " or drop --knock-firewall"
        )
    return f"{nft} failed: {detail}"


class NftFirewall(service.Service):
    """The nftables gate for one login port.  ``grant()`` is fire-and-forget."""

    log = Logger()

    def __init__(
        self,
        login_port: int,
        *,
        table: str = DEFAULT_TABLE,
        nft: str = "nft",
        reactor=None,
        run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
    ) -> None:
        self.login_port = login_port
        self.table = table
        self.nft = nft
        self.reactor = reactor
        self._run = run
        self._pending: List[str] = []
        self._busy = False
        self.dropped = 0
        self.failures = 0

    def _nft_sync(self, *args: str, script: Optional[str] = None) -> None:
        path = shutil.which(self.nft)
        if path is None:
            raise FirewallError(
                f"--knock-firewall nft: `{self.nft}` not found; install nftables"
                " (apt-get install nftables) or drop --knock-firewall"
            )
        try:
            proc = self._run(
                [path, *args],
                input=script,
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise FirewallError(f"--knock-firewall nft: cannot run {path}: {e}") from None
        if proc.returncode != 0:
            raise FirewallError(_explain(self.nft, proc.stderr))

    def check(self) -> None:
        """Raise :class:`FirewallError` unless the ruleset can be installed.

        ``nft -c`` parses and validates against the kernel without changing
        anything, so permissions and kernel support are checked early (from
        ``postOptions``), with a message instead of a traceback.
        """
        self._nft_sync("-c", "-f", "-", script=ruleset(self.table, self.login_port))

    def startService(self) -> None:
        self._nft_sync("-f", "-", script=ruleset(self.table, self.login_port))
        self.log.info(
            "knock: nft table inet {table} drops SYNs to port {port} from addresses"
            " without a grant",
            table=self.table,
            port=self.login_port,
        )
        super().startService()

    def stopService(self):
        super().stopService()
        try:
            self._nft_sync("delete", "table", "inet", self.table)
        except FirewallError as e:
            self.log.warn("knock: could not remove nft table: {error}", error=str(e))

    def grant(self, host: str, seconds: float) -> None:
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1  # the in-process gate still admits this address
            return
        self._pending.append(grant_commands(self.table, host, seconds))
        if not self._busy:
            self._flush()

    def _flush(self) -> None:
        if not self._pending or not self.running:
            self._busy = False
            return
        self._busy = True
        script = "".join(self._pending[:BATCH])
        del self._pending[:BATCH]
        reactor = self.reactor
        if reactor is None:
            from twisted.internet import reactor
        path = shutil.which(self.nft) or self.nft
        # The batch goes in one argv string (nft reads newline-separated
        # commands there as one transaction): no stdin plumbing needed.
        d = utils.getProcessOutputAndValue(path, [script], reactor=reactor)
        d.addCallback(self._flushed)
        d.addErrback(self._flush_failed)

    def _flushed(self, result) -> None:
        out, err, code = result
        if code != 0:
            self._flush_failed(err.decode("utf-8", "replace"))
            return
        self._flush()

    def _flush_failed(self, why) -> None:
        self.failures += 1
        self.log.warn("knock: nft grant failed: {why}", why=str(why))
        self._flush()
