"""Where a webhook may be sent: https to public addresses only (SSRF), checked at subscription and at delivery.

At delivery the address is resolved once, checked, and connected to directly (TLS still verifies the
host name), so a host that re-resolves to a private address after the check (DNS rebinding) is refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import httpcore

from service.errors import ValidationFailed

RESOLVE_TIMEOUT = 5.0


def forbidden_ip(address: str) -> bool:
    """Loopback, private, link-local, unique-local, CGNAT, multicast, reserved: anything not globally routable."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast or ip.is_loopback or ip.is_link_local or ip.is_private


async def resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def check_url(url: str, *, allow_private: bool, field: str = "url") -> str:
    """The URL if it is an acceptable target, else a 422 naming the field."""
    def refuse(message: str, code: str) -> ValidationFailed:
        return ValidationFailed.on(field, message, code)

    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise refuse("Not a valid URL", "invalid_url") from exc
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise refuse("Expected an https:// URL", "invalid_url")
    if parts.scheme == "http" and not allow_private:
        raise refuse("Webhook URLs must use https", "insecure_url")
    if parts.username or parts.password:
        raise refuse("Webhook URLs must not carry credentials", "invalid_url")
    if allow_private:
        return url
    host = parts.hostname
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            addresses = await resolve(host, port)
        except (OSError, TimeoutError, UnicodeError) as exc:
            raise refuse(f"The host {host} does not resolve", "unresolvable_host") from exc
    if not addresses or any(forbidden_ip(a) for a in addresses):
        raise refuse("Loopback, link-local and private addresses are not allowed", "private_target")
    return url


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves each host once, refuses non-public addresses, and connects to the address it checked."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, *, allow_private: bool) -> None:
        self._inner = inner
        self._allow_private = allow_private

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        if not self._allow_private:
            try:
                addresses = await resolve(host, port)
            except (OSError, TimeoutError, UnicodeError) as exc:
                raise httpcore.ConnectError(f"{host} does not resolve") from exc
            if not addresses or any(forbidden_ip(a) for a in addresses):
                raise httpcore.ConnectError(f"refused: {host} resolves to a non-public address")
            host = addresses[0]
        return await self._inner.connect_tcp(host, port, timeout=timeout, local_address=local_address,
                                             socket_options=socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not webhook targets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
