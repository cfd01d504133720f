"""What a failed connection means, as values: a :class:`Kind` that decides what the
caller does, and a :class:`Reason` that says what happened.

The engines turn their driver's exceptions into a :class:`Failure`
(:meth:`bootstrap.engines.Engine.classify`); the socket errors both drivers pass on are
classified here, once.
"""

from __future__ import annotations

import errno
import socket
import ssl
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from .errors import CloudbootError, ConfigError, RefusedError, UnavailableError
from .redaction import redact_text

if TYPE_CHECKING:
    from .target import Target


class Kind(Enum):
    """What the caller should do about a failure."""

    RETRYABLE = "retryable"
    """Try again later: the server is not there yet, busy or restarting."""
    AUTH = "auth"
    """The credentials were refused: worth at most a few tries."""
    TLS = "tls"
    """Certificate or TLS negotiation: never retried."""
    MISSING_DATABASE = "missing_database"
    """Logged in; the configured database does not exist."""
    CONFIG = "config"
    """A setting cannot work (a CA file that cannot be read, the other engine's port)."""
    FATAL = "fatal"
    """Nothing will change by waiting."""


class Reason(Enum):
    """What happened. ``value`` is the phrase logs and messages show; ``kind`` what the
    caller does; ``before_tcp`` whether no TCP connection was made (the port is
    closed, so cheap TCP probes can watch for it to open)."""

    def __new__(cls, phrase: str, kind: Kind, before_tcp: bool = False) -> Reason:
        member = object.__new__(cls)
        member._value_ = phrase
        member.kind = kind
        member.before_tcp = before_tcp
        return member

    kind: Kind
    before_tcp: bool

    # The network
    CONNECTION_REFUSED = ("connection refused", Kind.RETRYABLE, True)
    TIMED_OUT = ("timed out", Kind.RETRYABLE, True)
    NO_ROUTE = ("no route to host", Kind.RETRYABLE, True)
    NETWORK_UNREACHABLE = ("network unreachable", Kind.RETRYABLE, True)
    NAME_NOT_RESOLVING = ("host name does not resolve", Kind.RETRYABLE)
    CONNECTION_DROPPED = ("connection dropped", Kind.RETRYABLE)
    CONNECTION_FAILED = ("connection failed", Kind.RETRYABLE)
    NETWORK_ERROR = ("network error", Kind.RETRYABLE)
    # The server is there but not ready
    SILENT_SERVER = ("the server sent nothing after the connection opened", Kind.RETRYABLE)
    STARTING_UP = ("database starting up", Kind.RETRYABLE)
    SHUTTING_DOWN = ("database shutting down", Kind.RETRYABLE)
    IN_RECOVERY = ("database in recovery", Kind.RETRYABLE)
    TOO_MANY_CONNECTIONS = ("too many connections", Kind.RETRYABLE)
    RESOURCE_LIMIT = ("user exceeded a resource limit", Kind.RETRYABLE)
    TERMINATED = ("connection terminated by the server", Kind.RETRYABLE)
    TEMPLATE_IN_USE = ("template database in use", Kind.RETRYABLE)
    SERVER_REFUSED = ("the server refused the connection", Kind.RETRYABLE)
    # Credentials and permissions
    BAD_PASSWORD = ("password authentication failed", Kind.AUTH)
    ACCESS_DENIED = ("access denied", Kind.AUTH)
    AUTH_FAILED = ("authentication failed", Kind.AUTH)
    NO_SUCH_ROLE = ("role does not exist", Kind.AUTH)
    NO_PASSWORD = ("no password supplied", Kind.AUTH)
    NO_CONNECT_PERMISSION = ("no permission to connect", Kind.AUTH)
    DATABASE_ACCESS_DENIED = ("access to the database denied", Kind.AUTH)
    HOST_NOT_ALLOWED = ("host not allowed to connect", Kind.AUTH)
    NOT_IN_PG_HBA = ("host not allowed by pg_hba.conf", Kind.AUTH)
    PERMISSION_DENIED = ("permission denied", Kind.AUTH)
    # TLS
    CERTIFICATE_UNTRUSTED = ("certificate not trusted", Kind.TLS)
    HOST_NAME_MISMATCH = ("host name does not match the certificate", Kind.TLS)
    SERVER_WITHOUT_TLS = ("server does not offer TLS", Kind.TLS)
    TLS_REQUIRED = ("server refuses a login without TLS", Kind.TLS)
    TLS_HANDSHAKE = ("TLS handshake failed", Kind.TLS)
    # Settings
    CA_FILE_UNUSABLE = ("CA file missing or unreadable", Kind.CONFIG)
    WRONG_PROTOCOL = ("the server does not speak the engine's protocol", Kind.CONFIG)
    OTHER_ENGINE = ("the port belongs to a server of the other engine", Kind.CONFIG)
    # The database
    MISSING_DATABASE = ("database does not exist", Kind.MISSING_DATABASE)
    # Nothing to wait for
    AUTH_METHOD_UNSUPPORTED = ("authentication method not supported", Kind.FATAL)
    HOST_BLOCKED = ("host blocked after too many connection errors", Kind.FATAL)
    INVALID_OPTION = ("invalid connection option", Kind.FATAL)
    UNEXPECTED = ("unexpected error", Kind.FATAL)


HINT_CA = (
    "the server's certificate is not issued by a CA in the CA file: set CLOUDBOOT_CA_FILE "
    "to the bundle of the CA that issued it (RDS/Aurora: the RDS global-bundle.pem)"
)
HINT_HOSTNAME = (
    "the certificate does not name the host cloudboot connects to: use the host name "
    "the certificate was issued for, or CLOUDBOOT_SSLMODE=verify-ca"
)
HINT_CREDENTIALS = "check the username and password in the injected secret"
HINT_TLS_REQUIRED = "the server requires TLS: do not set CLOUDBOOT_SSLMODE=disable"
HINT_NO_TLS = "the server does not offer TLS; enable it on the server"
HINT_CREATE = "create the database, or let cloudboot create it (CLOUDBOOT_CREATE_DATABASE=true)"
HINT_CA_FILE = "set CLOUDBOOT_CA_FILE to a readable PEM bundle, or to 'system'"

DEFAULT_HINTS: dict[Reason, str] = {
    Reason.CERTIFICATE_UNTRUSTED: HINT_CA,
    Reason.HOST_NAME_MISMATCH: HINT_HOSTNAME,
    Reason.SERVER_WITHOUT_TLS: HINT_NO_TLS,
    Reason.TLS_REQUIRED: HINT_TLS_REQUIRED,
    Reason.CA_FILE_UNUSABLE: HINT_CA_FILE,
    Reason.BAD_PASSWORD: HINT_CREDENTIALS,
    Reason.ACCESS_DENIED: HINT_CREDENTIALS,
    Reason.AUTH_FAILED: HINT_CREDENTIALS,
    Reason.NO_SUCH_ROLE: HINT_CREDENTIALS,
    Reason.NO_PASSWORD: HINT_CREDENTIALS,
    Reason.NO_CONNECT_PERMISSION: "grant CONNECT on the database to the user",
    Reason.DATABASE_ACCESS_DENIED: "grant the user access to the database",
    Reason.HOST_NOT_ALLOWED: "the server does not accept this user from this address",
    Reason.NOT_IN_PG_HBA: "the server does not accept this user from this address",
    Reason.MISSING_DATABASE: HINT_CREATE,
    Reason.HOST_BLOCKED: "run FLUSH HOSTS on the server",
    Reason.WRONG_PROTOCOL: "something that is not a database of this engine answers there "
    "(another service, or garbage from a proxy): check the host and the port",
}


@dataclass(frozen=True)
class Failure:
    """A classified failure. ``detail`` is the driver's message with every known secret
    blanked; ``hint`` says what to do (the reason's default unless given)."""

    reason: Reason
    detail: str = ""
    hint: str | None = None

    def __post_init__(self) -> None:
        if self.hint is None and self.reason in DEFAULT_HINTS:
            object.__setattr__(self, "hint", DEFAULT_HINTS[self.reason])

    @property
    def kind(self) -> Kind:
        return self.reason.kind

    @property
    def port_closed(self) -> bool:
        """Whether it happened before any TCP connection (probes can watch the port)."""
        return self.reason.before_tcp


class SilentServer(TimeoutError):
    """The TCP connection opened but the server sent nothing within the timeout (a
    MySQL-family client at a PostgreSQL port waits for a greeting that never comes)."""


def detail_of(exc: BaseException) -> str:
    """``exc``'s message on one line, secrets blanked, at most 400 characters."""
    text = " ".join(str(exc).split())
    return redact_text(text)[:400]


def classify_os_error(exc: BaseException, detail: str | None = None) -> Failure | None:
    """Network, DNS and TLS errors a socket raises (both drivers pass them on), or
    ``None`` for an exception that is not one."""
    detail = detail_of(exc) if detail is None else detail
    if isinstance(exc, ssl.SSLCertVerificationError):
        text = (exc.verify_message or str(exc)).lower()
        if "hostname" in text or "ip address mismatch" in text or exc.verify_code in (62, 64):
            return Failure(Reason.HOST_NAME_MISMATCH, detail)
        return Failure(Reason.CERTIFICATE_UNTRUSTED, detail)
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return Failure(Reason.CONNECTION_DROPPED, detail)
    if isinstance(exc, ssl.SSLError):
        return Failure(Reason.TLS_HANDSHAKE, detail)
    if isinstance(exc, socket.gaierror):
        return Failure(Reason.NAME_NOT_RESOLVING, detail)
    if isinstance(exc, SilentServer):
        return Failure(Reason.SILENT_SERVER, detail)
    if isinstance(exc, ConnectionRefusedError):
        return Failure(Reason.CONNECTION_REFUSED, detail)
    if isinstance(exc, TimeoutError):
        return Failure(Reason.TIMED_OUT, detail)
    if isinstance(exc, ConnectionError):
        return Failure(Reason.CONNECTION_DROPPED, detail)
    if isinstance(exc, OSError):
        return Failure(_OS_REASONS.get(exc.errno or 0, Reason.NETWORK_ERROR), detail)
    return None


_OS_REASONS = {
    errno.EHOSTUNREACH: Reason.NO_ROUTE,
    errno.ENETUNREACH: Reason.NETWORK_UNREACHABLE,
}


def error_for(failure: Failure, message: str, hint: str | None = None) -> CloudbootError:
    """The exception that reports ``failure`` with ``message``: refused (77) for TLS and
    credentials, a configuration error (78) for a setting that cannot work, unavailable
    (69) for everything else."""
    hint = hint or failure.hint
    detail = {"message": failure.detail} if failure.detail else None
    if failure.kind in (Kind.AUTH, Kind.TLS):
        return RefusedError(message, hint=hint, detail=detail)
    if failure.kind is Kind.CONFIG:
        return ConfigError([message], hint=hint, detail=detail)
    return UnavailableError(message, hint=hint, detail=detail)


def tailored(failure: Failure, target: Target) -> Failure:
    """``failure`` with a hint that fits the settings in force: it never suggests a
    setting that already has the suggested value."""
    if failure.hint == HINT_DENIED_OR_PLAINTEXT and target.sslmode != "disable":
        return Failure(failure.reason, failure.detail, HINT_CREDENTIALS)
    return failure


HINT_DENIED_OR_PLAINTEXT = (
    "check the username and password in the injected secret; a server that requires TLS "
    "answers a plaintext login the same way: with CLOUDBOOT_SSLMODE=disable, turn TLS on"
)


def raised_inside(exc: BaseException, package: str) -> bool:
    """Whether ``exc`` was raised by code of ``package`` (a driver choking on what the
    server sent raises ``IndexError``, ``struct.error`` and the like)."""
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_globals.get("__name__", "")
        tb = tb.tb_next
    return isinstance(last, str) and last.split(".")[0] == package


def unexpected(exc: BaseException) -> Failure:
    """An exception nobody knows: fatal, named by its type."""
    return Failure(Reason.UNEXPECTED, f"{type(exc).__name__}: {detail_of(exc)}")
