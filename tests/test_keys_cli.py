"""Key files and the keygen/pubkey commands."""

import os
import stat

import pytest

from gamesession.client import cli
from gamesession.keys import KeyFileError, read_public_key


def test_keygen_writes_0600_and_refuses_to_overwrite(tmp_path, capsys):
    path = str(tmp_path / "server.key")
    assert cli.main(["keygen", "--key-file", path]) is None
    printed = capsys.readouterr().out.strip()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert cli.main(["keygen", "--key-file", path]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert cli.main(["pubkey", "--key-file", path]) is None
    assert capsys.readouterr().out.strip() == printed
    assert cli.main(["keygen", "--key-file", path, "--force"]) is None
    assert capsys.readouterr().out.strip() != printed


def test_pubkey_of_missing_file(tmp_path, capsys):
    assert cli.main(["pubkey", "--key-file", str(tmp_path / "nope")]) == 2
    assert "cannot read key file" in capsys.readouterr().err


def test_read_public_key_from_text_or_file(tmp_path):
    text = "A" * 43 + "="
    assert bytes(read_public_key(text)) == bytes(32)
    f = tmp_path / "pub"
    f.write_text(text + "\n")
    assert bytes(read_public_key("@" + str(f))) == bytes(32)
    with pytest.raises(KeyFileError):
        read_public_key("short")
    with pytest.raises(KeyFileError):
        read_public_key("@" + str(tmp_path / "missing"))


def test_ping_with_unusable_key_is_one_line(capsys):
    assert cli.main(["ping", "--server-key", "nope"]) == 2
    assert capsys.readouterr().err.startswith("gamesession ping: --server-key:")




def test_keygen_quiet_prints_nothing(tmp_path, capsys):
    path = str(tmp_path / "server.key")
    assert cli.main(["keygen", "--quiet", "--key-file", path]) is None
    assert capsys.readouterr().out == ""
    assert cli.main(["pubkey", "--key-file", path]) is None
    assert len(capsys.readouterr().out.strip()) == 44
