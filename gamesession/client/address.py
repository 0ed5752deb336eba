"""``HOST[:PORT]`` as the command line takes it and shows it."""


def split_host_port(text: str, default_port: int):
    """``HOST[:PORT]``, ``[V6]:PORT`` or a bare IPv6 address; ValueError if malformed."""
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise ValueError("{!r} is not [IPV6]:PORT".format(text))
        port = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, None
    if not host:
        raise ValueError("{!r} has no host (expected HOST[:PORT])".format(text))
    if port is None:
        return host, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("{!r}: the port must be a number from 1 to 65535".format(text))
    return host, int(port)


def join_host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets (``[::1]:7000``)."""
    return "[{}]:{}".format(host, port) if ":" in host else "{}:{}".format(host, port)
