"""``HOST[:PORT]`` as the command line takes it."""


def split_host_port(text: str, default_port: int):
    """``HOST[:PORT]``, ``[V6]:PORT`` or a bare IPv6 address."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, default_port
