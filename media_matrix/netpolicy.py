"""The address policy for untrusted fetches (pure, no HTTP library): which non-public
addresses a fetch may reach. Kept apart from :mod:`media_matrix.httpclient` so loading the
config (which parses ``network.allow``) does not import requests."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# -- the address policy (pure) ----------------------------------------------------------------


@dataclass(frozen=True)
class AllowRule:
    """One ``network.allow`` entry: a network, and a port or any port (None)."""

    network: IPNetwork
    port: int | None = None

    def matches(self, address: IPAddress, port: int) -> bool:
        return address in self.network and (self.port is None or self.port == port)


@dataclass(frozen=True)
class NetworkPolicy:
    """Which non-public addresses untrusted fetches may reach (none by default)."""

    allow: tuple[AllowRule, ...] = ()

    def refusal(self, host: str, port: int) -> str | None:
        """Why connecting to ``host``:``port`` (an IP literal) is refused, or None if allowed."""
        address = _unmapped(ipaddress.ip_address(host.split("%", 1)[0]))
        kind = non_public_kind(address)
        if kind is None or any(rule.matches(address, port) for rule in self.allow):
            return None
        return f"{address} is a {kind} address (not in network.allow)"


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address):
        for embedded in (address.ipv4_mapped, address.sixtofour):
            if embedded is not None:
                return embedded
        if address.teredo is not None:
            return address.teredo[1]
    return address


def non_public_kind(address: IPAddress) -> str | None:
    """The kind of a non-public address (loopback, private, ...), None for a public one."""
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("non-global", not address.is_global),
    )
    return next((kind for kind, hit in checks if hit), None)


def parse_allow_entry(entry: str) -> list[AllowRule]:
    """``10.0.0.0/8``, ``127.0.0.1``, ``127.0.0.1:8080``, ``[::1]:8080``, ``localhost:8080``.

    A host name is resolved once, here: the rule holds the addresses it named at load time.
    Raises ValueError naming the entry."""
    text = entry.strip()
    host, port = text, None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif text.count(":") == 1:
        host, port = text.split(":")
    port_number = None
    if port is not None:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{entry!r}: port must be 1-65535")
        port_number = int(port)
    try:
        networks: list[IPNetwork] = [ipaddress.ip_network(host, strict=False)]
    except ValueError:
        networks = _resolve_name(entry, host)
    return [AllowRule(network, port_number) for network in networks]


def _resolve_name(entry: str, host: str) -> list[IPNetwork]:
    if not host or "/" in host:
        raise ValueError(f"{entry!r}: expected an IP address, a network or a host name")
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ValueError(f"{entry!r}: cannot resolve {host!r}: {exc}") from None
    found = {ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos}
    return [ipaddress.ip_network(a) for a in sorted(found, key=str)]


def network_policy(entries: Iterable[str]) -> NetworkPolicy:
    rules: list[AllowRule] = []
    for entry in entries:
        rules += parse_allow_entry(entry)
    return NetworkPolicy(tuple(rules))
