"""The client's address, one rule for the whole site: the login lock-out (django-axes,
through ``AXES_CLIENT_IP_CALLABLE``) and the request log lines ask here.

Without proxies the address is the connection's (``REMOTE_ADDR``); ``X-Forwarded-For``
is ignored, since any client can send it. Behind ``AXES_IPWARE_PROXY_COUNT`` reverse
proxies, each proxy appends the address it was connected from to ``X-Forwarded-For``,
and the last one connects to us. So with N proxies the client is the N-th entry from
the right of the header: ``client`` for one proxy, ``client, proxy1`` for two. Entries
further left were sent by the client itself and are never trusted, so nobody can pose
as another address (and lock that address's users out) by sending the header.

django-ipware reads the header. It is not left to django-axes' own call because
django-ipware counts the proxies *written in the header* (one fewer than the proxies in
front: the last proxy's own address is REMOTE_ADDR) and, in its default strict mode,
rejects a header with more entries than that count, falling back to REMOTE_ADDR, which
is the proxy: every client that sent its own header would then share one address.
"""
from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from ipware import get_client_ip

FORWARDED_HEADER = "HTTP_X_FORWARDED_FOR"


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: from ``X-Forwarded-For`` behind ``AXES_IPWARE_PROXY_COUNT``
    proxies, else the connection's. A header shorter than the proxies should have made
    (a request that did not come through them) falls back to the connection's address."""
    proxies = settings.AXES_IPWARE_PROXY_COUNT
    if proxies:
        address, _ = get_client_ip(
            request, proxy_count=proxies - 1, request_header_order=(FORWARDED_HEADER,), strict=False
        )
        if address:
            return address
    return request.META.get("REMOTE_ADDR") or None
