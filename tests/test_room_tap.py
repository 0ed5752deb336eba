"""The room options of ``twistd gamesession`` and how makeService wires them."""

import pytest
from twisted.python import usage

from gamesession.server import tap
from gamesession.server.application import EchoApplication
from gamesession.server.roomhandler import RelayRoom

from fakes import MemoryReactorUDP


class Ticker(RelayRoom):
    """A handler for these tests: importable as test_room_tap.Ticker."""


class Attached(EchoApplication):
    servers = []

    def attach(self, server):
        self.servers.append(server)


def parse(*argv):
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


def test_room_defaults():
    o = parse()
    assert (o["max-rooms"], o["max-rooms-per-session"], o["max-room-members"],
            o["max-label-bytes"], o["room-linger"], o["max-relay-rate"]) == (
        10000, 8, 64, 512, 0.0, 2000.0)
    assert o["rooms"] == {} and o["room-ticks"] == {}


def test_room_handlers_and_ticks_are_repeatable():
    o = parse("--room", "dm=test_room_tap.Ticker", "--room", "chat=gamesession.server.roomhandler.RelayRoom",
              "--room-tick", "dm=30", "--room-tick", "chat=0.5")
    assert o["rooms"] == {"dm": Ticker, "chat": RelayRoom}
    assert o["room-ticks"] == {"dm": 30.0, "chat": 0.5}


@pytest.mark.parametrize("argv, message", [
    (["--room", "dm"], "TYPE=VALUE"),
    (["--room", "bad type=test_room_tap.Ticker"], "TYPE=VALUE"),
    (["--room", "dm=no.such.module"], "--room dm=no.such.module"),
    (["--room", "dm=os.path"], "not a class or callable"),
    (["--room", "dm=test_room_tap.Attached"], "lacks"),
    (["--room-tick", "dm=61"], "at most 60"),
    (["--room-tick", "dm=0"], "above 0"),
    (["--room-tick", "dm=fast"], "--room-tick"),
    (["--max-label-bytes", "4096"], "at most 2048"),
    (["--max-rooms", "0"], "positive"),
    (["--room-linger", "-1"], "0 or more"),
])
def test_bad_room_options_are_usage_errors(argv, message):
    with pytest.raises(usage.UsageError) as info:
        parse(*argv)
    assert message in str(info.value)


def test_make_service_builds_the_configured_rooms_and_attaches_the_game(tmp_path):
    Attached.servers.clear()
    config = parse("--key-file", str(tmp_path / "k"), "--app", "test_room_tap.Attached",
                   "--max-rooms", "5", "--max-rooms-per-session", "2", "--max-room-members", "9",
                   "--max-label-bytes", "100", "--room-linger", "3", "--max-relay-rate", "50",
                   "--room", "dm=test_room_tap.Ticker", "--room-tick", "dm=20")
    service = tap.makeService(config, MemoryReactorUDP())
    manager = service.registry.rooms
    assert (manager.max_rooms, manager.max_rooms_per_session, manager.max_room_members,
            manager.max_label_bytes, manager.linger, manager.relay_rate) == (5, 2, 9, 100, 3.0, 50.0)
    assert manager.handlers == {"dm": Ticker} and manager.tick_rates == {"dm": 20.0}
    [server] = Attached.servers
    assert server is manager.server and server.rooms is manager
    assert server.sessions.all() == [] and server.sessions.find("alice") is None
