"""Break the code one way at a time, run the tests that should notice, restore.

    python tests/sabotage.py [WORDS...]

Each entry of BREAKS replaces one snippet of gamesession/ (it must occur
exactly once), runs the named tests, which must fail, and puts the file
back.  WORDS pick entries whose name contains one of them.  The table in
docs/testing.md is its output.  Not collected by pytest (no test_ prefix);
run it from the checkout's root, never while other work edits gamesession/.
"""
import subprocess
import sys

T = "tests/"
BREAKS = [
 # (name, file, old, new, tests)
 ("second check_admission in open removed", "gamesession/server/registry.py",
  "        self.check_admission(user, host)\n        old = self.by_user.get(user)", "        old = self.by_user.get(user)",
  [T+"test_guards.py::test_a_slow_checker_cannot_kick_under_duplicate_login_reject", T+"test_guards.py::test_a_slow_checker_cannot_overfill_max_sessions"]),
 ("the per-address pending cap removed", "gamesession/server/limits.py",
  '        count = self.by_host.get(host, 0)\n        if count >= self.max_per_address:\n            return "pending_per_address"',
  '        count = self.by_host.get(host, 0)',
  [T+"test_adversarial_tcp.py::test_pending_connection_limits"]),
 ("fail() sends its error but does not close", "gamesession/server/login.py",
  "        self._end_session()\n        self._close()\n\n    def _end_session", "        self._end_session()\n\n    def _end_session",
  [T+"test_adversarial_tcp.py::test_garbage_frames_get_one_error_and_a_close"]),
 ("fail() closes without sending its error", "gamesession/server/login.py",
  "        self.send_message(message or wire.error(code, reason))\n        self.state = \"closed\"", "        self.state = \"closed\"",
  [T+"test_adversarial_tcp.py::test_a_mebibyte_of_noise"]),
 ("a reply however small the knock", "gamesession/knock/rule.py",
  "            if len(candidate) <= len(data):", "            if True:",
  [T+"test_property_knock.py::test_classic_replies_are_never_larger_than_the_knock"]),
 ("another address's stray knock resets progress", "gamesession/knock/rule.py",
  '        if index is None:\n            self.stats["stray"] += 1\n            return False',
  '        if index is None:\n            self.stats["stray"] += 1\n            for entry in self._table.values():\n                entry.next_index = max(1, entry.next_index - 1)\n            return False',
  [T+"test_property_knock.py::test_other_addresses_never_change_ones_progress"]),
 ("verify_knock skips the MAC", "gamesession/knock/rule.py",
  "    if not hmac.compare_digest(mac, knock_mac(secret, host, port, header, server_id)):", "    if False:",
  [T+"test_property_knock.py::test_verify_knock_never_raises", T+"test_property_knock.py::test_a_genuine_knock_verifies_to_its_fields_for_its_sender_and_port_only"]),
 ("parse_sequence allows repeats", "gamesession/knock/rule.py",
  "    if len(set(ports)) != len(ports):", "    if False:",
  [T+"test_property_knock.py::test_parse_sequence_against_what_was_written"]),
 ("parse_sequence misnames the bad port", "gamesession/knock/rule.py",
  'f"knock port {part!r} is not a number', 'f"knock port {part} is not a number',
  [T+"test_property_knock.py::test_parse_sequence_against_what_was_written"]),
 ("unknown tokens get a one-byte answer", "gamesession/server/registry.py",
  '            stats.dropped["unknown_token"] += 1\n            return', '            stats.dropped["unknown_token"] += 1\n            self._send(b"?", address)\n            return',
  [T+"test_adversarial_udp.py::test_flood_of_random_datagrams_while_an_honest_client_pings", T+"test_adversarial_udp.py::test_captured_packets_replayed_tampered_and_token_swapped"]),
 ("bad boxes get a one-byte answer", "gamesession/server/registry.py",
  '        except Drop as drop:\n            stats.dropped[drop.reason] += 1\n            return', '        except Drop as drop:\n            stats.dropped[drop.reason] += 1\n            self._send(b"?", address)\n            return',
  [T+"test_adversarial_udp.py::test_captured_packets_replayed_tampered_and_token_swapped"]),
 ("the knock gate answers every refused knock", "gamesession/knock/rule.py",
  "        if self.secret is not None and not self._authentic(host, port, data, now):\n            return _NOTHING",
  "        if self.secret is not None and not self._authentic(host, port, data, now):\n            return KnockResult(reply=b'?')", [T+"test_adversarial_udp.py::test_flood_at_the_knock_ports_gets_nothing_and_grants_nothing"]),
 ("pending per address default 2 (pending connections refused)", "gamesession/server/limits.py",
  "DEFAULT_MAX_PENDING_PER_ADDRESS = 32", "DEFAULT_MAX_PENDING_PER_ADDRESS = 2",
  [T+"test_shutdown.py::test_sigterm_tells_every_client_over_tcp_and_udp"]),
 ("every 20th login refused", "gamesession/server/registry.py",
  "        self.check_admission(user, host)\n        old = self.by_user.get(user)", "        self.check_admission(user, host)\n        if self.stats.logins['ok'] % 20 == 19:\n            self.stats.logins['ok'] += 1\n            raise LoginRefused(ErrorCode.SERVER_FULL, 'flaky', 'server_full')\n        old = self.by_user.get(user)",
  [T+"test_adversarial_soak.py"]),
 ("replay window off by one at its far edge", "gamesession/protocol/replay.py",
  "    if age >= size:\n        return False\n    return not", "    if age > size:\n        return False\n    return not",
  [T+"test_property_udp.py::test_replay_window_matches_a_set_and_a_highest"]),
 ("replay window mask one bit too wide", "gamesession/protocol/replay.py",
  "        mask = _MASKS[size] = (1 << size) - 1", "        mask = _MASKS[size] = (1 << size) + 1",
  [T+"test_property_udp.py::test_replay_window_matches_a_set_and_a_highest"]),
 ("replay window mask one bit short", "gamesession/protocol/replay.py",
  "        mask = _MASKS[size] = (1 << size) - 1", "        mask = _MASKS[size] = (1 << size) - 2",
  [T+"test_property_udp.py::test_replay_window_matches_a_set_and_a_highest"]),
 ("room datagrams lose their session", "gamesession/server/registry.py",
  "            self.rooms.datagram_received(session, payload)", "            self.rooms.datagram_received(None, payload)",
  [T+"test_rooms.py"]),
 ("any authenticated counter roams", "gamesession/server/registry.py",
  "        if newest and address != session.address:", "        if address != session.address:",
  [T+"test_property_udp.py::test_only_the_newest_authenticated_counter_moves_the_address"]),
 ("a rejected duplicate gets SERVER_FULL", "gamesession/server/registry.py",
  '                raise LoginRefused(ErrorCode.ALREADY_LOGGED_IN,', '                raise LoginRefused(ErrorCode.SERVER_FULL,',
  [T+"test_metrics.py::test_refused_login_counts_its_outcome"]),
 ("usage errors lose the repeated port", "gamesession/knock/rule.py",
  "f\"knock ports must be unique; repeated: {','.join(map(str, dupes))}\"", 'f"knock ports must be unique"',
  [T+"test_knock_process.py::test_bad_knock_options_fail_clearly"]),
 ("--auth memory: checkers ignored (guests)", "gamesession/server/accounts.py",
  "    return Portal(PlayerRealm(), checkers or [GuestChecker()])", "    return Portal(PlayerRealm(), [GuestChecker()])",
  [T+"test_tap.py::test_auth_memory_builds_a_checker", T+"test_guards.py::test_login_through_auth_file", T+"test_guards.py::test_login_through_auth_unix"]),
 ("text credentials for file:/unix checkers", "gamesession/server/accounts.py",
  "            user, password = _utf8(user), _utf8(password)", "            pass",
  # (Twisted's unix checker takes text or bytes alike: not a break for it.)
  [T+"test_guards.py::test_login_through_auth_file"]),
 ("healthcheck calls a silent server closed", "gamesession/client/healthcheck.py",
  '        raise Unhealthy("{} did not answer within {:g} s".format(where, timeout))', '        raise Unhealthy("the server closed the connection without answering the hello")',
  [T+"test_healthcheck.py::test_line_framing"]),
 ("INTERNAL catch-all removed", "gamesession/server/login.py",
  '        except Exception:\n            self.log.failure("unexpected error handling a frame from {peer}",\n                             peer=self.transport.getPeer())\n            self.fail(ErrorCode.INTERNAL, "internal error")\n', '',
  [T+"test_guards.py::test_an_unexpected_error_in_a_frame_handler_gets_internal_not_a_crash"]),
 ("crashing checker errback removed", "gamesession/server/login.py",
  "UsernamePassword(user, password), None, IPlayer)\n        d.addCallbacks(self._authenticated, self._denied)\n        d.addErrback(self._login_crashed)\n",
  "UsernamePassword(user, password), None, IPlayer)\n        d.addCallbacks(self._authenticated, self._denied)\n",
  [T+"test_guards.py::test_a_crashing_checker_gets_internal_and_a_close"]),
 ("avatar logout unguarded", "gamesession/server/registry.py",
  '        try:\n            session.logout()\n        except Exception:\n            self.log.failure("avatar logout failed for {user}", user=loggable(session.user))', '        session.logout()',
  [T+"test_guards.py::test_an_avatar_logout_that_raises_still_ends_the_session"]),
 ("application calls unguarded", "gamesession/server/registry.py",
  '        try:\n            getattr(self.application, method)(*args)\n        except Exception:', '        if 1:\n            getattr(self.application, method)(*args)\n        if 0:',
  [T+"test_guards.py::test_an_application_that_raises_disturbs_no_session"]),
 ("send errors uncounted", "gamesession/server/registry.py",
  '        except OSError:\n            stats.dropped["send_error"] += 1', '        except OSError:\n            pass',
  [T+"test_guards.py::test_a_failed_udp_send_is_counted_and_the_session_lives"]),
 ("no token-collision retry", "gamesession/server/registry.py",
  "        while token in self.by_token:", "        while False:",
  [T+"test_guards.py::test_a_token_collision_draws_again"]),
 ("end() not idempotent", "gamesession/server/registry.py",
  "        if session.ended:\n            return\n        # Say goodbye", "        # Say goodbye",
  [T+"test_guards.py::test_end_twice_ends_once"]),
 ("unusable server key not a ServerKeyMismatch", "gamesession/protocol/handshake.py",
  '            raise ServerKeyMismatch("server sent an unusable key")', '            raise',
  [T+"test_guards.py::test_the_client_refuses_an_unusable_server_key"]),
 ("confirm box not checked", "gamesession/protocol/handshake.py",
  "            if open_box(keys.tcp_s2c, 0, confirm) != CONFIRM_PLAINTEXT:\n                raise BadBox()", "            pass",
  [T+"test_guards.py::test_the_client_refuses_a_confirm_box_that_does_not_open", T+"test_guards.py::test_the_client_refuses_a_confirm_box_with_a_plaintext"]),
 ("confirm plaintext not compared", "gamesession/protocol/handshake.py",
  "            if open_box(keys.tcp_s2c, 0, confirm) != CONFIRM_PLAINTEXT:", "            if open_box(keys.tcp_s2c, 0, confirm) is None:",
  [T+"test_guards.py::test_the_client_refuses_a_confirm_box_with_a_plaintext"]),
 ("client takes anything before the challenge", "gamesession/protocol/clientcore.py",
  '            if message["type"] != "challenge":\n                raise ProtocolError(ErrorCode.UNEXPECTED, "expected a challenge")\n', '',
  [T+"test_guards.py::test_the_client_against_a_server_that_skips_the_challenge"]),
 ("client welcome without a port check", "gamesession/protocol/clientcore.py",
  '                udp_port=wire.int_field(inner, "udp_port", 1, 65535),', '                udp_port=inner.get("udp_port"),',
  [T+"test_guards.py::test_the_client_refuses_a_bad_welcome"]),
 ("datagram counter limit off by one", "gamesession/protocol/datagram.py",
  "    if counter >= MAX_COUNTER:\n        raise OverflowError", "    if counter > MAX_COUNTER:\n        raise OverflowError",
  [T+"test_guards.py::test_the_datagram_counter_runs_out_instead_of_reusing_a_nonce"]),
 ("stream counter limit removed", "gamesession/protocol/handshake.py",
  "        if counter >= MAX_COUNTER:\n            raise BadBox()\n        self.counter = counter + 1", "        self.counter = counter + 1",
  [T+"test_guards.py::test_the_stream_counter_runs_out_instead_of_reusing_a_nonce"]),
 ("fallback open lets CryptoError out", "gamesession/protocol/handshake.py",
  "    except (CryptoError, ValueError, TypeError, struct.error):\n        raise BadBox()", "    except (ValueError, TypeError, struct.error):\n        raise BadBox()",
  [T+"test_guards.py::test_the_bindings_fallback_seals_and_opens_the_same_bytes"]),
 ("knock version not checked", "gamesession/knock/rule.py",
  "    if version != VERSION:\n        return None\n    return AuthKnock", "    return AuthKnock",
  [T+"test_knock_guards.py::test_a_knock_of_another_version_is_refused_even_with_a_good_mac"]),
 ("replay cache expiry off by one", "gamesession/knock/rule.py",
  "            if expires >= now:\n                break\n            del self._expires[nonce]", "            if expires > now:\n                break\n            del self._expires[nonce]",
  [T+"test_knock_guards.py::test_the_replay_cache_expires_only_the_stale_prefix"]),
 ("replay cache expires everything", "gamesession/knock/rule.py",
  "            if expires >= now:\n                break\n            del self._expires[nonce]", "            del self._expires[nonce]",
  [T+"test_knock_guards.py::test_the_replay_cache_expires_only_the_stale_prefix", T+"test_knock_guards.py::test_a_replay_is_still_refused_after_a_partial_expiry"]),
 ("nft queue unbounded", "gamesession/knock/firewall.py",
  "        if len(self._pending) >= MAX_PENDING:", "        if False:",
  [T+"test_knock_guards.py::test_grants_beyond_the_queue_bound_are_dropped_and_counted"]),
 ("failed nft run stalls the queue", "gamesession/knock/firewall.py",
  '        self.log.warn("knock: nft grant failed: {why}", why=str(why))\n        self._flush()', '        self.log.warn("knock: nft grant failed: {why}", why=str(why))',
  [T+"test_knock_guards.py::test_a_failed_nft_run_is_counted_and_the_next_batch_still_goes"]),
 ("failed nft run not counted", "gamesession/knock/firewall.py",
  "        self.failures += 1\n", "",
  [T+"test_knock_guards.py::test_a_failed_nft_run_is_counted_and_the_next_batch_still_goes"]),
]

only = sys.argv[1:]
results = []
for name, path, old, new, tests in BREAKS:
    if only and not any(o in name for o in only):
        continue
    if old is None:
        continue
    src = open(path).read()
    if src.count(old) != 1:
        results.append((name, "PATTERN NOT FOUND ({} matches)".format(src.count(old)), 0))
        print(results[-1], flush=True)
        continue
    open(path, "w").write(src.replace(old, new))
    try:
        for test in tests:
            r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", test],
                               capture_output=True, text=True, timeout=900)
            out = r.stdout + r.stderr
            failed = r.returncode == 1 or (r.returncode == 3 and " failed" in out.splitlines()[-1])
            verdict = ("fails (good)" if failed else "PASSES (bad)" if r.returncode == 0
                       else "rc={} {}".format(r.returncode, out[-600:]))
            results.append((name, test.split("tests/")[1], verdict))
            print(results[-1], flush=True)
    finally:
        open(path, "w").write(src)
bad = [r for r in results if "PASSES" in str(r[-1]) or "NOT FOUND" in str(r[1])]
print("DONE: {} checks, {} not failing".format(len(results), len(bad)))
sys.exit(1 if bad else 0)
