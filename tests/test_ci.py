"""CI runs what README says, and no test skips in CI for want of what CI installs."""

import os
import re

from conftest import ROOT


def read(*parts):
    with open(os.path.join(ROOT, *parts)) as f:
        return f.read()


def readme_test_command():
    text = read("README.md")
    match = re.search(r"Run the tests:\n\n```sh\n(.+?)\n```", text)
    assert match, "README.md has no 'Run the tests:' command block"
    return match.group(1)


def test_ci_runs_the_test_command_from_the_readme():
    command = readme_test_command()
    lines = [line for line in read(".ci", "run").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert lines[-1] == command
    assert "coverage report" in command and "coverage run" in command


def test_coverage_has_a_floor_and_measures_subprocesses():
    setup = read("setup.cfg")
    assert re.search(r"^\[coverage:report\][^\[]*^fail_under = \d+", setup, re.M | re.S)
    assert re.search(r"^\[coverage:run\][^\[]*^patch = subprocess", setup, re.M | re.S)
    conftest = read("tests", "conftest.py")
    start_server = conftest[conftest.index("def start_server"):]
    start_server = start_server[:start_server.index("\ndef ")]
    assert "stop(" in start_server and "sig=9" not in start_server  # a SIGKILLed twistd writes no data


def test_skips_go_through_need():
    """A test that cannot run here skips, but fails under CI=true (conftest.need)."""
    offenders = []
    for name in sorted(os.listdir(os.path.join(ROOT, "tests"))):
        if not name.endswith(".py") or name == "conftest.py":
            continue
        for number, line in enumerate(read("tests", name).splitlines(), 1):
            if re.search(r"pytest\.(skip\(|importorskip|mark\.skip)", line) and \
                    "not a missing tool" not in line:
                offenders.append("{}:{}: {}".format(name, number, line.strip()))
    assert offenders == []
