"""The tree is the architecture: the sans-I/O modules import no I/O framework.

``gamesession/protocol/`` (and the knock rule, ``gamesession/knock/rule.py``)
is what a client in another language mirrors and what any event loop drives;
it must not pull in Twisted or zope.interface, neither by a direct import
statement nor through one of its own imports.
"""

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMEWORKS = ("twisted", "zope", "asyncio")


def sans_io_modules():
    protocol = os.path.join(ROOT, "gamesession", "protocol")
    names = ["gamesession.protocol." + f[:-3] for f in sorted(os.listdir(protocol))
             if f.endswith(".py") and f != "__init__.py"]
    return ["gamesession.protocol"] + names + ["gamesession.knock.rule"]


def source_path(module):
    path = os.path.join(ROOT, *module.split("."))
    return os.path.join(path, "__init__.py") if os.path.isdir(path) else path + ".py"


def imported_names(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module


def test_the_protocol_package_holds_the_core_modules():
    modules = sans_io_modules()
    for name in ("handshake", "datagram", "replay", "wire", "clientcore", "vectors"):
        assert "gamesession.protocol." + name in modules


@pytest.mark.parametrize("module", sans_io_modules())
def test_no_framework_import_statement(module):
    with open(source_path(module)) as f:
        tree = ast.parse(f.read())
    bad = [name for name in imported_names(tree) if name.split(".")[0] in FRAMEWORKS]
    assert bad == [], "{} imports {}".format(module, bad)


@pytest.mark.parametrize("module", sans_io_modules())
def test_importing_loads_no_framework(module):
    code = ("import sys, {0}; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in {1!r}))").format(module, FRAMEWORKS)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]", "importing {} loads {}".format(module, out)
