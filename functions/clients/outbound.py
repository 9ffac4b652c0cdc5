"""Where outbound calls may go: the allow-list for URLs a request names, and the link-local guard.

Why: Krateo's GET /optimize takes the database handler's URL from the query string; without a list
the optimizer calls any URL it is given, with any credentials (an SSRF relay inside the cluster).
And cloud metadata services (169.254.169.254 and kin) hand node credentials to anyone who asks from
inside: no call of ours goes there, by an IP literal, by a name that resolves there, by a redirect or
by a next-page link, unless an operator lists that host exactly.

Patterns are `host[:port]`, separated by commas or spaces: `*` matches any characters (dots too), a
pattern without a port matches every port, IPv6 literals are written in brackets (`[fd00::1]:8080`).
URLs are parsed with httpx, the parser that sends the request, so the check and the call agree.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

import httpx

from functions.errors import FieldError, Forbidden, InvalidInput

ALLOW_SETTING = "FINOPS_OUTBOUND_ALLOW"
LINK_LOCAL_SETTING = "FINOPS_OUTBOUND_ALLOW_LINK_LOCAL"
CLUSTER_LOCAL = "*.svc,*.svc.cluster.local"
"""Default allow-list for request-named URLs: Kubernetes Service names of the cluster."""

# Link-local (where AWS, GCP, Azure and OpenStack serve metadata), Alibaba's and AWS's IPv6 metadata.
GUARDED = tuple(ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fe80::/10", "100.100.100.200/32", "fd00:ec2::254/128"))
_SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}

Resolver = Callable[[str, int], list[str]]


@dataclass(frozen=True)
class Pattern:
    """One `host[:port]` entry; `host` lower-case, maybe with `*`."""

    host: str
    port: int | None = None

    @property
    def exact(self) -> bool:
        return "*" not in self.host

    def matches(self, host: str, port: int) -> bool:
        return fnmatchcase(host.lower(), self.host) and (self.port is None or self.port == port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


def parse_patterns(text: str, setting: str = ALLOW_SETTING) -> tuple[Pattern, ...]:
    """`host[:port]` entries; InvalidInput naming the setting for one that cannot be read."""
    out: list[Pattern] = []
    for raw in text.replace(",", " ").split():
        host, port = raw, ""
        if raw.startswith("["):
            host, _, rest = raw[1:].partition("]")
            port = rest.removeprefix(":")
        elif raw.count(":") == 1:
            host, port = raw.split(":")
        if not host or (port and not port.isdigit()) or "/" in host or "@" in host:
            raise InvalidInput(f"{setting}: {raw!r} is not host[:port]", [FieldError(setting, f"bad entry {raw!r}")])
        out.append(Pattern(host.lower().rstrip("."), int(port) if port else None))
    return tuple(out)


def url_pattern(url: str) -> Pattern | None:
    """The exact host:port a configured URL names (its scheme's default port when none); None when empty."""
    if not url.strip():
        return None
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return None
    if not parsed.host:
        return None
    return Pattern(parsed.host.lower().rstrip("."), parsed.port or _DEFAULT_PORTS.get(parsed.scheme))


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (numeric forms such as 2852039166 included); [] when it does not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        return []  # the call itself will fail to connect and say so
    return [str(info[4][0]) for info in infos]


def _guarded(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in GUARDED if net.version == ip.version)


@dataclass(frozen=True)
class OutboundPolicy:
    """`allowed`: patterns a URL's host must match (None: any host); `link_local`: exact hosts whose
    link-local or metadata addresses may be reached (everyone else's are refused)."""

    allowed: tuple[Pattern, ...] | None = None
    link_local: tuple[Pattern, ...] = ()
    resolve: Resolver = system_resolver

    @classmethod
    def for_requests(cls, allow: str, configured: Iterable[str]) -> OutboundPolicy:
        """The list for URLs a request names: `allow` (default: cluster-local Service names), plus the
        host:port of every configured URL (the handler the deployment names, 127.0.0.1 on the local stack).
        An exact entry of `allow` (no `*`) may also be a link-local address: that is listing it explicitly."""
        patterns = parse_patterns(allow or CLUSTER_LOCAL)
        extra = tuple(p for p in (url_pattern(u) for u in configured) if p is not None)
        return cls(patterns + extra, tuple(p for p in patterns if p.exact))

    @classmethod
    def guard_only(cls, link_local: str = "") -> OutboundPolicy:
        """Any host, but never a link-local or metadata address unless listed (configured endpoints)."""
        return cls(None, parse_patterns(link_local, LINK_LOCAL_SETTING))

    def check(self, url: str | httpx.URL, what: str = "URL") -> httpx.URL:
        """The parsed URL when a call may go there, else InvalidInput (400 malformed, 403 refused)."""
        try:
            parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise InvalidInput(f"{what} is not a valid URL: {exc}", [FieldError(what, "invalid URL")]) from exc
        if parsed.scheme not in _SCHEMES or not parsed.host:
            raise InvalidInput(f"{what} must be an http(s) URL with a host, got scheme {parsed.scheme!r}",
                               [FieldError(what, "only http and https are allowed")])
        if parsed.userinfo:
            raise InvalidInput(f"{what} must not carry credentials (user:password@): send them as Authorization",
                               [FieldError(what, "userinfo is not allowed")])
        host, port = parsed.host.lower().rstrip("."), parsed.port or _DEFAULT_PORTS[parsed.scheme]
        if self.allowed is not None and not any(p.matches(host, port) for p in self.allowed):
            raise Forbidden(f"{what} names host {host}:{port}, which is not in {ALLOW_SETTING}",
                               [FieldError(what, f"host {host}:{port} not allowed ({ALLOW_SETTING})")])
        self.guard(host, port, what)
        return parsed

    def guard(self, host: str, port: int, what: str = "URL") -> None:
        """Refuse a host that is, or resolves to, a link-local or metadata address, unless listed exactly."""
        if any(p.exact and p.matches(host, port) for p in self.link_local):
            return
        addresses = [host] if _is_ip(host) else self.resolve(host, port)
        hit = next((a for a in addresses if _guarded(a)), None)
        if hit is not None:
            shown = host if hit == host else f"{host} ({hit})"
            setting = LINK_LOCAL_SETTING if self.allowed is None else ALLOW_SETTING
            raise Forbidden(f"{what} names {shown}, a link-local or cloud metadata address; list the host exactly "
                               f"in {setting} to allow it", [FieldError(what, f"{shown} is refused ({setting})")])


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    return True


DEFAULT = OutboundPolicy.guard_only()
"""What every endpoint call uses unless its caller passes a policy: any host, no metadata address."""
