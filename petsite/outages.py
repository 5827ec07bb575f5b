"""Which service an error says is unreachable, and an outage logged once, not per request.

The web tier meets three services: the database, the cache (the upload rate limit, the
heatmap requests) and the broker. When one is away, every request that needs it fails
the same way, often many a second: :func:`unreachable_service` tells such an error from
a bug (by exception type and the driver's error code, never by the message), and
:data:`outages` writes one warning when a service is first found away and one line when
it answers again, with how long it was away and how many requests it cost.
"""
from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)

DATABASE, CACHE, BROKER = "database", "cache", "broker"

# SQLite result codes (the low byte) that mean "not now" rather than "wrong": busy,
# locked, I/O error, disk full, cannot open the file.
SQLITE_TRANSIENT = {5, 6, 10, 13, 14}
# PostgreSQL SQLSTATE classes of the same kind: connection exception, insufficient
# resources, operator intervention (shutdown, cannot connect now, query cancelled),
# transaction rollback (serialisation failure, deadlock).
POSTGRES_TRANSIENT = {"08", "53", "57", "40"}


def unreachable_service(error: BaseException | None) -> str | None:
    """``"database"``, ``"cache"`` or ``"broker"`` when ``error`` says that service cannot
    be reached (or is briefly unable to answer); None for any other error."""
    from django.db import DatabaseError, InterfaceError, OperationalError

    if isinstance(error, InterfaceError):  # the connection is closed or broken
        return DATABASE
    if isinstance(error, OperationalError):
        return DATABASE if _transient_database_error(error) else None
    if isinstance(error, DatabaseError):
        return None  # an integrity or programming error: a bug, not an outage
    if _is_redis_connection_error(error):
        return CACHE
    if _is_broker_error(error):
        return BROKER
    return None


def _transient_database_error(error: BaseException) -> bool:
    cause = error.__cause__  # the driver's exception, which Django wraps
    sqlite_code = getattr(cause, "sqlite_errorcode", None)
    if sqlite_code is not None:
        return sqlite_code & 0xFF in SQLITE_TRANSIENT  # not "no such table" and such
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate is None:
        return True  # raised on the client's side: no connection could be made or kept
    return sqlstate[:2] in POSTGRES_TRANSIENT


def _is_redis_connection_error(error: BaseException | None) -> bool:
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:  # no Redis client installed: no Redis cache either
        return False
    return isinstance(error, RedisConnectionError | RedisTimeoutError)


def _is_broker_error(error: BaseException | None) -> bool:
    from kombu.exceptions import OperationalError as BrokerError

    return isinstance(error, BrokerError)


class Outages:
    """Services this process has found unreachable, so that each outage is logged once.

    ``down()`` at every failed request (a warning the first time, then only counted);
    ``up()`` whenever the service answered again (a line saying so if it had been away).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: dict[str, float] = {}
        self._failures: dict[str, int] = {}

    def down(self, service: str, error: BaseException, consequence: str) -> None:
        with self._lock:
            first = service not in self._since
            self._since.setdefault(service, time.monotonic())
            self._failures[service] = self._failures.get(service, 0) + 1
        if first:
            log.warning("The %s is unreachable (%s: %s): %s. Logged once until it is back.",
                        service, type(error).__name__, error, consequence)

    def up(self, service: str) -> None:
        if service not in self._since:  # the usual case, without taking the lock
            return
        with self._lock:
            since = self._since.pop(service, None)
            failures = self._failures.pop(service, 0)
        if since is not None:
            log.warning("The %s answers again after %.0f s; %d request(s) met it unreachable.",
                        service, time.monotonic() - since, failures)

    def is_down(self, service: str) -> bool:
        return service in self._since


outages = Outages()


def _database_connected(sender, connection, **kwargs) -> None:
    outages.up(DATABASE)


def watch_database() -> None:
    """A new database connection means the database is back (connected once, at start-up)."""
    from django.db.backends.signals import connection_created

    connection_created.connect(_database_connected, dispatch_uid="petsite.outages.database")
