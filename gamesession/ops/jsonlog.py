"""JSON-lines logs for twistd: ``twistd --logger gamesession.ops.jsonlog.logger -n gamesession``.

Each log event becomes one JSON object on one line, as serialized by
``twisted.logger.jsonFileLogObserver``: the structured fields (``event``,
``user``, ``outcome``, ``reason``, ``dropped`` ...) plus ``log_level``,
``log_namespace``, ``log_time`` and ``log_format``.  Select with jq, e.g.
``jq -c 'select(.event == "login")'``.

Where the lines go and how much is logged come from the environment, since
twistd calls the factory with no arguments:

- ``GAMESESSION_LOG_FILE``: append to this file (default: standard output,
  which suits containers and systemd).
- ``GAMESESSION_LOG_LEVEL``: debug, info (default), warn, error or critical.
"""

import os
import sys

from twisted.logger import (
    FilteringLogObserver,
    InvalidLogLevelError,
    LogLevel,
    LogLevelFilterPredicate,
    jsonFileLogObserver,
)


def logger(out=None, environ=None):
    """The observer factory twistd's ``--logger`` calls."""
    environ = os.environ if environ is None else environ
    name = environ.get("GAMESESSION_LOG_LEVEL", "info").strip().lower()
    try:
        level = LogLevel.levelWithName(name)
    except InvalidLogLevelError:
        raise SystemExit("GAMESESSION_LOG_LEVEL={!r}: use debug, info, warn, error or critical"
                         .format(name))
    if out is None:
        path = environ.get("GAMESESSION_LOG_FILE")
        # Taken now, before twistd redirects sys.stdout into the log itself.
        out = open(path, "a", encoding="utf-8") if path else sys.stdout
    return FilteringLogObserver(jsonFileLogObserver(out, recordSeparator=""),
                                [LogLevelFilterPredicate(defaultLogLevel=level)])
