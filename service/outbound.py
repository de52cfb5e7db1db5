"""One guard for every outbound fetch this service makes: apps' and external issuers' JWKS URLs, webhook targets.

A target is refused when its address is loopback, private, link-local (cloud metadata endpoints among them),
unique-local, shared (CGNAT), multicast, reserved or unspecified, unless private targets are explicitly allowed
(``WEBHOOKS_ALLOW_PRIVATE_TARGETS``, ``JWKS_ALLOW_PRIVATE_TARGETS``); a policy may also limit ports (webhooks:
443 and 8443) and requires https unless private targets are allowed. The check runs when the URL is registered
and again when fetching: the host is resolved once, every address checked, and the connection made to the
address that was checked (TLS still verifies the host name), so a name that re-resolves to a private address
after the check (DNS rebinding) is refused. Redirects are never followed by the callers.

Resolution goes through ``resolve`` (tests replace it to classify names without any lookup or connection).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

RESOLVE_TIMEOUT = 5.0
NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class Policy:
    what: str  # "webhook", "JWKS": named in refusals
    allow_private: bool
    ports: frozenset[int] | None = None  # None: any port


class TargetRefused(Exception):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def classify(address: str) -> str | None:
    """Why ``address`` is no outbound target (``"loopback"``, ``"private"``, ...), or None for a public one. An
    IPv6 address carrying an IPv4 one (mapped, NAT64, 6to4, Teredo) is judged by that too."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None) or (
            ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in NAT64 else None)
        if embedded is not None and (why := classify(str(embedded))) is not None:
            return why
    for reason, hit in (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback),
                        ("link-local", ip.is_link_local), ("multicast", ip.is_multicast),
                        ("unique-local", isinstance(ip, ipaddress.IPv6Address) and ip in _ULA),
                        ("reserved", ip.is_reserved), ("private", ip.is_private), ("not global", not ip.is_global)):
        if hit:
            return reason
    return None


_ULA = ipaddress.ip_network("fc00::/7")


async def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (the one resolver of outbound fetches)."""
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def addresses(host: str, port: int, policy: Policy) -> list[str]:
    """Every address ``host`` resolves to, each checked; TargetRefused if any is not a target (or the host does
    not resolve). With private targets allowed, the host itself (connected to as usual)."""
    if policy.allow_private:
        return [host]
    try:
        found = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            found = await resolve(host, port)
        except (OSError, TimeoutError, UnicodeError) as exc:
            raise TargetRefused(f"The host {host} does not resolve", "unresolvable_host") from exc
    refused = [why for a in found if (why := classify(a)) is not None]
    if not found or refused:
        raise TargetRefused(f"{policy.what} targets may not be loopback, private, link-local or other non-public "
                            f"addresses ({refused[0] if refused else 'none'})", "private_target")
    return found


def _port(url: str) -> tuple[Any, int]:
    try:
        parts = urlsplit(url)
        return parts, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise TargetRefused("Not a valid URL", "invalid_url") from exc


async def check_url(url: str, policy: Policy) -> None:
    """Raise TargetRefused unless ``url`` is an acceptable target of ``policy`` (at registration)."""
    parts, port = _port(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise TargetRefused("Expected an https:// URL", "invalid_url")
    if parts.username or parts.password:
        raise TargetRefused(f"{policy.what} URLs must not carry credentials", "invalid_url")
    if policy.allow_private:
        return
    if parts.scheme != "https":
        raise TargetRefused(f"{policy.what} URLs must use https", "insecure_url")
    check_port(port, policy)
    await addresses(parts.hostname, port, policy)


def check_port(port: int, policy: Policy) -> None:
    if policy.ports is not None and not policy.allow_private and port not in policy.ports:
        allowed = " and ".join(str(p) for p in sorted(policy.ports))
        raise TargetRefused(f"{policy.what} URLs may use the ports {allowed} only", "port_not_allowed")


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves each host once, refuses what ``policy`` refuses, and connects to the address it checked."""

    def __init__(self, policy: Policy, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._policy = policy
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None, socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            address = (await addresses(host, port, self._policy))[0]
            check_port(port, self._policy)
        except TargetRefused as exc:
            raise httpcore.ConnectError(f"refused: {exc.message}") from exc
        return await self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                             socket_options=socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not outbound targets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _Body(httpx.AsyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for part in self._stream:
                yield part
        except httpcore.TimeoutException as exc:
            raise httpx.ReadTimeout(str(exc)) from exc
        except httpcore.NetworkError as exc:
            raise httpx.ReadError(str(exc)) from exc

    async def aclose(self) -> None:
        await self._stream.aclose()


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport on an httpcore connection pool whose network backend is the guard (public APIs of
    both libraries; no retries, certificates verified)."""

    def __init__(self, policy: Policy) -> None:
        self._pool = httpcore.AsyncConnectionPool(ssl_context=ssl.create_default_context(), retries=0,
                                                  network_backend=GuardedBackend(policy))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host, port=request.url.port,
                             target=request.url.raw_path),
            headers=request.headers.raw, content=request.stream, extensions=request.extensions)
        try:
            response = await self._pool.handle_async_request(core)
        except httpcore.TimeoutException as exc:
            raise httpx.ConnectTimeout(str(exc), request=request) from exc
        except (httpcore.ConnectError, httpcore.NetworkError, httpcore.ProtocolError) as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        return httpx.Response(status_code=response.status, headers=response.headers, stream=_Body(response.stream),
                              extensions=response.extensions)

    async def aclose(self) -> None:
        await self._pool.aclose()
