"""A provider host's addresses, as nginx's balancer gets them (it does not resolve names)."""
from __future__ import annotations

import ipaddress
import socket

from ..errors import ServiceError


def resolve_ips(host: str, port: int) -> list[str]:
    """The host's addresses, IPv4 first; an IP literal is its own list."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ServiceError(f"cannot resolve {host}: {exc.strerror}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    return sorted(addresses, key=lambda address: ":" in address)
