"""Put this folder on PYTHONPATH to make the process refuse every non-loopback connect and DNS lookup.

Python imports ``sitecustomize`` at start-up, so every interpreter (including vLLM's workers)
inherits the guard. Loopback (127.0.0.0/8, ::1, localhost), the unspecified address (binding
servers resolve 0.0.0.0) and non-IP families such as AF_UNIX stay allowed.
"""

import errno
import ipaddress
import socket
from collections.abc import Callable
from typing import Any

_LOOPBACK_NAMES = {"", "localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
_INET = (socket.AF_INET, socket.AF_INET6)


def _allowed(host: object) -> bool:
    """True for loopback/unspecified literals and localhost names; anything else needs DNS or leaves the box."""
    if host is None:
        return True  # getaddrinfo(None, ...) resolves to the local wildcard or loopback
    text = host.decode() if isinstance(host, bytes) else str(host)
    if text.rstrip(".").lower() in _LOOPBACK_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False  # a hostname: connect() would resolve it in C, bypassing getaddrinfo below
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


def _refuse(what: str, address: object) -> OSError:
    """The error raised for a refused address; it names the address so failures are obvious."""
    return OSError(errno.ENETUNREACH, f"netguard: {what} to non-loopback address {address!r} refused")


def _guard_lookup(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a resolver (getaddrinfo, gethostbyname) so it refuses non-loopback names."""

    def lookup(host: object, *args: Any, **kwargs: Any) -> Any:
        if not _allowed(host):
            raise socket.gaierror(socket.EAI_NONAME, f"netguard: DNS lookup of non-loopback host {host!r} refused")
        return original(host, *args, **kwargs)

    return lookup


def _guard_connect(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap socket.connect/connect_ex so inet sockets only reach loopback."""

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in _INET and not _allowed(address[0]):
            raise _refuse("connect", address)
        return original(self, address)

    return connect


def _guard_create_connection(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap socket.create_connection; checked up front so the error names the host, not a resolved IP."""

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> Any:
        if not _allowed(address[0]):
            raise _refuse("create_connection", address)
        return original(address, *args, **kwargs)

    return create_connection


socket.getaddrinfo = _guard_lookup(socket.getaddrinfo)
socket.gethostbyname = _guard_lookup(socket.gethostbyname)
socket.create_connection = _guard_create_connection(socket.create_connection)
socket.socket.connect = _guard_connect(socket.socket.connect)
socket.socket.connect_ex = _guard_connect(socket.socket.connect_ex)
