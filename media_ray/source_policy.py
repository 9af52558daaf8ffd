"""Which sources a stream sent to the API may name, checked before anything is made for it.

What callers may rely on:

- `SourcePolicy(config).check(source)` returns the URI to open, or raises `SourceRefused` (a
  `ValueError`) whose one message says why and is fit to show the user. It never connects to
  anything: its only network call is name resolution (`socket.getaddrinfo`) of a URL's host, so
  a refusal says nothing about which ports are open.
- Local paths must be absolute and, once `Path.resolve()` has followed symbolic links and `..`,
  lie under one of `media_roots` and exist (a file, or a capture device under a root). The
  resolved path is what `check` returns, so FFmpeg opens what was checked. With no media roots
  (the default) no local path is accepted.
- URLs: `http`, `https`, `rtsp` and `rtsps` are accepted; `rtmp` only for a URL media-ray
  would pull, and every `rtmp://` URI of `media_ray.sources.SOURCE_KINDS` makes media-ray
  listen, so a user's `rtmp://` is refused: a publish URL comes from `source: "rtmp"`, for which
  the registry makes the listener URI itself (and does not pass it here). Any other scheme
  (`file:`, `concat:`, `pipe:`, `tcp:`, `udp:`, `data:`, `v4l2:`...) is refused, and so is a URL
  with spaces, control characters or backslashes, which other URL parsers read differently.
- A URL's host is refused when it is, or resolves to, an address that is not public: loopback,
  private, link-local (169.254.169.254, the cloud metadata service, among them), unspecified,
  multicast, reserved, and their IPv6 equivalents (IPv4 embedded in IPv6 included), unless
  `allow_private_hosts` is set or the host is one of `allowed_hosts` (compared exactly, case
  aside).
- `protocol_whitelist(uri)` is the FFmpeg `protocol_whitelist` of the URI's kind, which
  `media_ray.sources.open_source` passes on every open.

What it does not cover: the check is made once, when a stream is created. FFmpeg resolves the
host again when it connects (a name whose address changes in between is not caught), follows
HTTP redirects, and fetches an HLS playlist's segments from whatever hosts the playlist names;
where that matters, let media-ray reach the network only through an egress proxy or firewall.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from pathlib import Path
from typing import TypeAlias
from urllib.parse import urlparse

from media_ray.config import SourcePolicyConfig
from media_ray.sources import source_kind

#: URL schemes a source may have (a plain path is a local file or device)
ALLOWED_SCHEMES = ("http", "https", "rtsp", "rtsps", "rtmp")

_IP: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
#: characters no accepted URL holds: where URL parsers disagree (FFmpeg's and Python's)
_URL_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]")
_PATH_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
#: the NAT64 well-known prefix: the last 32 bits are an IPv4 address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


log = logging.getLogger(__name__)


class SourceRefused(ValueError):
    """A source the policy does not accept; the message says why."""

    def __init__(self, why: str):
        super().__init__(f"source refused: {why}")


def protocol_whitelist(uri: str) -> str:
    """The FFmpeg protocols an open of `uri` may use (its kind's, from SOURCE_KINDS)."""
    return source_kind(uri)[1].protocols


class SourcePolicy:
    """Checks user-supplied sources against a `SourcePolicyConfig`."""

    def __init__(self, config: SourcePolicyConfig | None = None):
        self.config = config or SourcePolicyConfig()
        self.roots = [Path(r).expanduser().resolve() for r in self.config.media_roots]
        self.allowed_hosts = {_bare_host(h) for h in self.config.allowed_hosts}

    def check(self, source: str) -> str:
        """The URI to open for `source`; raises SourceRefused, and logs the refusal (the source
        shortened: it is the caller's text, maybe long or hostile)."""
        try:
            return self._check(source)
        except SourceRefused as e:
            log.warning("%s: %.200r", e, source)
            raise

    def _check(self, source: str) -> str:
        try:
            scheme = urlparse(source).scheme.lower()
        except ValueError:
            raise SourceRefused("not a URL or path media-ray can read") from None
        if len(scheme) <= 1:  # a plain path (or a Windows drive letter, which is not absolute here)
            return self._check_path(source)
        if scheme not in ALLOWED_SCHEMES:
            raise SourceRefused(
                f"{scheme!r} sources are not accepted (accepted: http, https, rtsp and rtsps URLs, "
                "and files under the media roots)"
            )
        if _URL_UNSAFE.search(source):
            raise SourceRefused("a URL may not hold spaces, control characters or backslashes")
        if source_kind(source)[1].listens:
            raise SourceRefused(
                f"an {scheme}:// URL would make media-ray listen for a publisher; "
                'create the stream with source "rtmp" to be given a publish URL'
            )
        self._check_host(source)
        return source

    # -- local paths --------------------------------------------------------------------------
    def _check_path(self, source: str) -> str:
        if not self.roots:
            raise SourceRefused("local files are not accepted here (no live.policy.media_roots)")
        outside = SourceRefused("local files are accepted only under the media roots (live.policy.media_roots)")
        if _PATH_UNSAFE.search(source) or not Path(source).is_absolute():
            raise outside
        try:
            real = Path(source).resolve()
        except (OSError, RuntimeError, ValueError):  # a loop of links, an unreadable folder
            raise outside from None
        if not any(real.is_relative_to(root) for root in self.roots):
            raise outside
        if not real.exists() or real.is_dir():
            raise SourceRefused(f"{source}: no such file under the media roots")
        return str(real)

    # -- hosts --------------------------------------------------------------------------------
    def _check_host(self, source: str) -> None:
        u = urlparse(source)
        try:
            host, port = u.hostname, u.port
        except ValueError:  # a port out of range, brackets that do not close
            raise SourceRefused("the URL's host or port cannot be read") from None
        if not host:
            raise SourceRefused("the URL names no host")
        if self.config.allow_private_hosts or _bare_host(host) in self.allowed_hosts:
            return
        if not all(is_public(ip) for ip in _addresses(host, port)):
            raise SourceRefused(
                f"host {host!r} is, or resolves to, a loopback, private, link-local, multicast or reserved "
                "address (an administrator may allow it: live.policy.allowed_hosts, allow_private_hosts)"
            )


def is_public(ip: _IP) -> bool:
    """Whether an address is a public unicast one, an IPv4 address embedded in IPv6 included."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and not is_public(embedded):
            return False
    private = ip.is_loopback or ip.is_link_local or ip.is_private or ip.is_unspecified
    return ip.is_global and not (private or ip.is_multicast or ip.is_reserved)


def _addresses(host: str, port: int | None) -> list[_IP]:
    """The addresses a host is or resolves to; one that cannot be resolved is refused."""
    literal = _ip(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise SourceRefused(f"host {host!r} cannot be resolved") from None
    addresses = [_ip(str(info[4][0])) for info in infos]
    if not addresses or None in addresses:
        raise SourceRefused(f"host {host!r} cannot be resolved")
    return [a for a in addresses if a is not None]


def _ip(text: str) -> _IP | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])  # without an IPv6 zone (fe80::1%eth0)
    except ValueError:
        return None


def _bare_host(host: str) -> str:
    """A host as compared with allowed_hosts: lower case, an IPv6 address without brackets."""
    return host.strip().lower().removeprefix("[").removesuffix("]")
