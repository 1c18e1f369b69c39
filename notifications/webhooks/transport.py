"""HTTP for webhooks: which URLs a tenant may register, and a session that calls only public addresses.

A tenant chooses the URL, so without care Herald could be made to call its own network (SSRF):
metadata services, Redis, the database. Two checks:
- `validate_url`, when an endpoint is saved: https only, no credentials in the URL, no literal
  private address or local host name.
- `guarded_session`, when a request is made: each connection resolves the host itself, refuses it
  if any address is not global (private, loopback, link-local, CGNAT, multicast...), and connects to
  the address it checked, so a DNS answer that changes between check and connect (rebinding) can't
  slip through. Redirects are never followed and proxies from the environment are ignored.

`WEBHOOKS["allow_local"]` (development and tests) allows http://localhost and private addresses.
The PyPI package `advocate` did this for requests, but it is unmaintained since 2020 and predates
urllib3 2; the guard needs one method of urllib3's connection, overridden here.
"""

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError
from urllib3.util import connection as urllib3_connection

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# Names that only mean something inside a private network.
LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")
MAX_URL_LENGTH = 2048
USER_AGENT = "Herald-Webhooks/1.0"


def allow_local() -> bool:
    return bool(settings.WEBHOOKS.get("allow_local"))


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def validate_url(url: str) -> str:
    """The URL as stored, or ValidationError saying what is wrong with it."""
    url = (url or "").strip()
    if not url:
        raise ValidationError("Enter the URL Herald should post to.")
    if len(url) > MAX_URL_LENGTH:
        raise ValidationError(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValidationError(f"The URL is not valid: {exc}.") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise ValidationError("Enter a full URL such as https://example.com/herald/webhooks.")
    if parts.username is not None or parts.password is not None:
        raise ValidationError("The URL must not contain a user name or password; Herald signs each message.")
    if parts.fragment:
        raise ValidationError("The URL must not contain a fragment (#...).")
    if port == 0:
        raise ValidationError("The URL's port is not valid.")
    local = host in LOCAL_HOSTS or host.endswith(LOCAL_SUFFIXES)
    if parts.scheme == "http" and not (allow_local() and local):
        raise ValidationError("The URL must start with https://.")
    if allow_local():
        return url
    try:
        public = is_public_address(host)
    except ValueError:  # a host name: its addresses are checked again on every connection
        if local or "." not in host:
            raise ValidationError(f"{host} is not a public host name.") from None
        return url
    if not public:
        raise ValidationError(f"{host} is a private or reserved address; use a public one.")
    return url


class BlockedAddress(NewConnectionError):
    """The host resolves to an address Herald does not call."""


class _GuardMixin:
    """Resolve, check every address, then connect to a checked address (never resolve twice)."""

    host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any
    _dns_host: str

    def _new_conn(self) -> socket.socket:
        if allow_local():
            sock: socket.socket = super()._new_conn()  # type: ignore[misc]
            return sock
        try:
            infos = socket.getaddrinfo(self._dns_host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise NewConnectionError(self, f"could not resolve {self.host}: {exc.strerror}") from exc  # type: ignore[arg-type]
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        refused = [a for a in addresses if not is_public_address(a)]
        if refused:
            raise BlockedAddress(
                self,  # type: ignore[arg-type]
                f"{self.host} resolves to {refused[0]}, a private or reserved address,"
                " which Herald does not call",
            )
        last: OSError | None = None
        for address in addresses:
            try:
                return urllib3_connection.create_connection(
                    (address, self.port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except OSError as exc:
                last = exc
        raise NewConnectionError(self, f"could not connect to {self.host}: {last}")  # type: ignore[arg-type]


class GuardedHTTPConnection(_GuardMixin, HTTPConnection):
    pass


class GuardedHTTPSConnection(_GuardMixin, HTTPSConnection):
    pass


class GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": GuardedHTTPConnectionPool,
            "https": GuardedHTTPSConnectionPool,
        }


def guarded_session() -> requests.Session:
    """A session for one batch: connections to an endpoint are kept alive between its messages."""
    session = requests.Session()
    session.trust_env = False  # no proxy or .netrc from the environment
    adapter = GuardedAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def describe_error(exc: BaseException) -> str:
    """What went wrong with a request, in words a tenant can act on (no stack, no secrets)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # the root cause names it best
        seen.add(id(current))
        if isinstance(current, BlockedAddress | NewConnectionError):
            text = str(current)
            return text.split(": ", 1)[1] if text.startswith("<") and ": " in text else text
        reason = getattr(current, "reason", None)
        current = reason if isinstance(reason, BaseException) else (current.__cause__ or current.__context__)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"could not connect within {settings.WEBHOOKS['connect_timeout']:g} s"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return f"no answer within {settings.WEBHOOKS['read_timeout']:g} s"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS error: {str(exc)[-200:]}"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"connection failed: {str(exc)[-200:]}"
    return f"{type(exc).__name__}: {str(exc)[:200]}"
