"""Where webhooks may go: public addresses only, over HTTPS.

A webhook is a request the site makes on a user's behalf, so a URL naming the site's own
network (a database, a cloud metadata service at 169.254.169.254, an admin port on
loopback) would let any user reach it (server-side request forgery). Every address the
host name resolves to must be public: not private, loopback, link-local, multicast,
reserved or unspecified. The check runs when the URL is registered and again before each
try (a name can resolve elsewhere later). ``PETSITE_WEBHOOKS_ALLOW_PRIVATE`` lifts it for
tests and development, where http:// is then accepted for loopback addresses too.
"""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeURL(ValueError):
    """A URL webhooks may not go to: ``code`` for programs, the message for the user."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (an IP literal is itself); empty when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    addresses = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is 127.0.0.1
        addresses.append(mapped or address)
    return addresses


def is_public(address: IPAddress) -> bool:
    return address.is_global and not address.is_multicast


def check_url(url: str) -> list[IPAddress]:
    """Raise :class:`UnsafeURL` unless webhooks may go to ``url``; returns its addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UnsafeURL("invalid", "Enter a full https:// URL.")
    if parts.username or parts.password:
        raise UnsafeURL("credentials", "Leave the user name and password out of the URL.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeURL("invalid", "The URL's port is not a number from 1 to 65535.") from None
    addresses = resolve(parts.hostname, port)
    if not addresses:
        raise UnsafeURL("unresolvable", f"The host name {parts.hostname} cannot be found.")
    allow_private = settings.PETSITE_WEBHOOKS_ALLOW_PRIVATE
    if not allow_private and not all(is_public(address) for address in addresses):
        raise UnsafeURL("private_address", f"{parts.hostname} is a private, loopback, link-local or multicast "
                        "address: webhooks go only to public addresses on the internet.")
    if parts.scheme == "http" and not (allow_private and all(address.is_loopback for address in addresses)):
        raise UnsafeURL("not_https", "Use an https:// URL: webhooks carry your photos' results.")
    return addresses
