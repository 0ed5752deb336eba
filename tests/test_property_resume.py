"""Property: across any sequence of resumes and fallback logins no nonce repeats under any key.

Every secretbox sealed for a datagram (both ends) is recorded as (key,
counter); the pair must be new each time.  After each switch the client's
datagrams under the new token are accepted, the old token's are not, and the
server's late datagrams under the old key are accepted or dropped, never
mistaken for the new channel's.
"""

from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from gamesession.protocol import datagram
from gamesession.protocol.datagram import Drop, Kind

from fakes import Harness

OPS = st.lists(st.sampled_from(["c2s", "s2c", "drop_resume", "takeover_resume", "relogin",
                                "late_s2c"]), max_size=40)
ADDRESS = ("198.51.100.7", 5555)


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_no_nonce_is_ever_reused_across_channel_switches(ops):
    sealed = []
    real_seal = datagram.seal

    def recording_seal(key, counter, plaintext):
        sealed.append((key, counter))
        return real_seal(key, counter, plaintext)

    with mock.patch.object(datagram, "seal", recording_seal):
        harness = Harness(users={"alice": "pw"}, resume_grace=20.0)
        connection, session = harness.logged_in()
        core = connection.core
        keys_used = [core.channel.send_key]
        late = []
        for op in ops:
            session = harness.registry.by_user["alice"]
            if op == "c2s":
                before = harness.stats.dropped.copy()
                harness.registry.datagram_received(core.datagram(Kind.DATA, b"up"), ADDRESS)
                assert harness.stats.dropped == before  # accepted under the current token
                for packet, _ in harness.udp_sent():
                    assert core.datagram_received(packet) == (Kind.DATA, b"up")
            elif op == "s2c":
                if session.send_datagram(b"down"):
                    [(packet, _)] = harness.udp_sent()
                    assert core.datagram_received(packet) == (Kind.DATA, b"down")
            elif op == "late_s2c":
                if session.send_datagram(b"late"):
                    late.extend(packet for packet, _ in harness.udp_sent())
            else:
                old_channel = core.channel
                if op != "takeover_resume":
                    connection.lose()
                connection = harness.connect()
                connection.resume(core, resume_session=op != "relogin")
                assert core.channel is not old_channel
                assert core.channel.send_key not in keys_used
                keys_used.append(core.channel.send_key)
                # A relogin replaced the old session: its DISCONNECT went out under the old key.
                late.extend(packet for packet, _ in harness.udp_sent())
                # The old token is dead at the server.
                harness.registry.datagram_received(old_channel.seal(Kind.DATA, b"old"), ADDRESS)
                assert harness.udp_sent() == []
                # Datagrams the server sealed before the switch may still arrive.
                for packet in late:
                    try:
                        # (the old session's DISCONNECT after a relogin is dropped: superseded)
                        assert core.datagram_received(packet) == (Kind.DATA, b"late")
                    except Drop:
                        pass
                late = []
    assert len(sealed) == len(set(sealed))
