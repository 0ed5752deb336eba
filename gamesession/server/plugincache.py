"""Write twistd's plugin cache so that it stays fresh in a read-only install.

twistd finds ``gamesession`` through ``twisted/plugins/dropin.cache``.  It
rebuilds the cache whenever a plugin file is as new as the cache or newer
(``>=``, so the same second counts as stale) and then tries to write it; in a
container whose server user cannot write site-packages that fails at every
start ("Unable to write to plugin cache ... error number 13") and every start
re-imports all plugins.  Docker's classic builder makes this happen by
rounding file times to whole seconds, so a cache written in the same second
as the plugin file ends up exactly as old as it.

Run once, as the user who installed, after ``pip install``:

    python -m gamesession.server.plugincache

It sets every plugin file's time to two whole seconds before now, writes the
cache and sets the cache's time to the current whole second: strictly newer,
whether times are kept exactly or rounded to seconds.
"""

import os
import sys
import time

#: How far back the plugin files are dated, in whole seconds.
MARGIN = 2


def plugin_directories() -> "list[str]":
    """The ``twisted/plugins`` directories on ``sys.path`` (where caches live)."""
    import twisted.plugins

    return [d for d in twisted.plugins.__path__ if os.path.isdir(d)]


def refresh(directories=None, now: "float | None" = None) -> "list[str]":
    """Date the plugin files back, rewrite each cache, date it now; the caches' paths."""
    from twisted.plugin import IPlugin, getPlugins

    import twisted.plugins

    directories = plugin_directories() if directories is None else directories
    second = int(time.time() if now is None else now)
    plugin_time = second - MARGIN
    caches = []
    for directory in directories:
        for name in os.listdir(directory):
            path = os.path.join(directory, name)
            if name.endswith(".py") and os.stat(path).st_mtime > plugin_time:
                os.utime(path, (plugin_time, plugin_time))
        cache = os.path.join(directory, "dropin.cache")
        if os.path.exists(cache):
            os.remove(cache)  # no stale entry survives; getPlugins writes it anew
        caches.append(cache)
    list(getPlugins(IPlugin, twisted.plugins))
    for cache in caches:
        if not os.path.exists(cache):
            raise RuntimeError("twistd did not write its plugin cache {}".format(cache))
        os.utime(cache, (second, second))
    return caches


def main() -> int:
    for cache in refresh():
        print("wrote {}".format(cache))
    return 0


if __name__ == "__main__":
    sys.exit(main())
