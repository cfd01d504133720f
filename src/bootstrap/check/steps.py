"""The steps of ``cloudboot check`` and the loop that runs them.

Each step takes the :class:`_Context` the steps before it filled in and returns the
details it found, or raises a :class:`~bootstrap.errors.CloudbootError` whose exit code
is the class of the failure. The loop turns any other exception into a failed step too:
a server that answers garbage must not crash a diagnosis.
"""

from __future__ import annotations

import errno
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import Config, load
from ..engines import (
    Connection,
    Engine,
    close_quietly,
    engine_for,
    identified,
    needs_identifying,
    other_engine_at,
)
from ..errors import CloudbootError, ConfigError, RefusedError, UnavailableError
from ..failures import Failure, Kind, Reason, error_for, tailored
from ..rendering import render
from ..tls import TlsSetupError, client_context
from .certificates import (
    NAME_MISMATCH,
    decode_certificate,
    explain_refusal,
    host_matches_certificate,
    session_detail,
)
from .report import Report, Step


@dataclass
class _Context:
    """What the steps learn and hand on to the next ones."""

    environ: Mapping[str, str]
    loaded: Config | None = None
    addresses: list[tuple[socket.AddressFamily, Any]] = field(default_factory=list)
    sockaddr: tuple[socket.AddressFamily, Any] | None = None
    connection: Connection | None = None
    database_missing: bool = False

    @property
    def config(self) -> Config:
        assert self.loaded is not None  # noqa: S101 - set by the sources step
        return self.loaded

    @property
    def engine(self) -> Engine:
        return engine_for(self.config.target.engine)

    def close(self) -> None:
        if self.connection is not None:
            close_quietly(self.connection)
            self.connection = None


def run_check(environ: Mapping[str, str]) -> Report:
    """Run every step in order until one fails; never raises for a failed step."""
    context = _Context(environ)
    steps: list[Step] = []
    try:
        for name, function in _STEPS:
            step = _run_step(name, function, context)
            steps.append(step)
            if not step.ok:
                break
    finally:
        context.close()
    return Report(steps)


def _run_step(name: str, function: Callable[[_Context], dict[str, Any]], context: _Context) -> Step:
    started = time.perf_counter()
    try:
        detail = function(context)
    except CloudbootError as exc:
        return _failed_step(name, started, exc)
    except Exception as exc:  # noqa: BLE001 - a diagnosis reports what it did not foresee
        failure = context.engine.classify(exc) if context.loaded else None
        if failure is None or failure.reason is Reason.UNEXPECTED:
            error: CloudbootError = UnavailableError(
                f"unexpected {type(exc).__name__} during the {name} step",
                hint="the server answered something cloudboot does not understand; "
                "check that the port belongs to the configured engine",
            )
        else:
            error = error_for(failure, failure.reason.value)
        return _failed_step(name, started, error)
    return Step(name, ok=True, elapsed_ms=_ms_since(started), detail=detail)


def _failed_step(name: str, started: float, exc: CloudbootError) -> Step:
    detail = dict(exc.detail)
    if isinstance(exc, ConfigError) and len(exc.problems) > 1:
        detail.setdefault("problems", list(exc.problems))
    return Step(
        name,
        ok=False,
        elapsed_ms=_ms_since(started),
        detail=detail,
        error=str(exc),
        hint=exc.hint,
        exit_code=exc.exit_code,
    )


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


# --- sources ---------------------------------------------------------------------------


def _step_sources(context: _Context) -> dict[str, Any]:
    try:
        config = load(context.environ)
        # The boot renders before it connects; a rendering problem stops it just the same.
        render(config)
    except ConfigError as exc:
        raise ConfigError(
            exc.problems,
            hint="fix the variables and settings named above (values are never shown); "
            "README lists where cloudboot looks for credentials",
            detail={"problems": list(exc.problems)},
        ) from None
    context.loaded = config
    target = config.target
    return {
        "source": config.source.label,
        "variables": list(config.source.variables),
        "config_file": config.settings.config,
        "engine": target.engine,
        "host": target.host,
        "port": target.port,
        "database": target.dbname,
        "user": target.user,
        "sslmode": target.sslmode,
        "ca_file": target.ca_file,
    }


# --- dns -------------------------------------------------------------------------------


def _step_dns(context: _Context) -> dict[str, Any]:
    target = context.config.target
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnavailableError(
            f"the host name {target.host} does not resolve ({exc.strerror})",
            hint=_dns_hint(exc, context.config.source.label),
        ) from None
    for family, _type, _proto, _name, sockaddr in infos:
        if (family, sockaddr) not in context.addresses:
            context.addresses.append((family, sockaddr))
    return {"host": target.host, "addresses": [sockaddr[0] for _, sockaddr in context.addresses]}


def _dns_hint(exc: socket.gaierror, source: str) -> str:
    if exc.errno == socket.EAI_AGAIN:
        return "the DNS server did not answer in time: check the resolver, then try again"
    return (
        f"check the host in {source} (an RDS/Aurora endpoint looks like "
        "NAME.cluster-ID.REGION.rds.amazonaws.com); a name inside a VPC resolves only "
        "from that VPC, with its DNS resolution turned on"
    )


# --- tcp -------------------------------------------------------------------------------


def _step_tcp(context: _Context) -> dict[str, Any]:
    target = context.config.target
    timeout = target.connect_timeout
    failures: list[str] = []
    last: OSError = OSError(errno.EADDRNOTAVAIL, "no address")
    for family, sockaddr in context.addresses:
        started = time.perf_counter()
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(sockaddr)
        except OSError as exc:
            failures.append(f"{sockaddr[0]}: {_socket_reason(exc, timeout)}")
            last = exc
            continue
        context.sockaddr = (family, sockaddr)
        return {
            "address": sockaddr[0],
            "port": sockaddr[1],
            "connect_ms": _ms_since(started),
            "failed_addresses": failures,
        }
    raise UnavailableError(
        f"cannot connect to port {target.port}: " + "; ".join(failures),
        hint=_tcp_hint(last, target.port),
    )


def _socket_reason(exc: OSError, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    return (exc.strerror or type(exc).__name__).lower()


def _tcp_hint(exc: OSError, port: int) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return (
            f"nothing listens on port {port} there: check the port, and that the "
            "database is running (a stopped or resuming instance refuses connections)"
        )
    if isinstance(exc, TimeoutError):
        return (
            "the packets are dropped on the way: allow this task's security group on "
            f"port {port} in the database's security group (and check network ACLs)"
        )
    if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return "there is no route to that address: check the subnets and route tables"
    return "check the network path between this task and the database"


# --- tls -------------------------------------------------------------------------------


def _step_tls(context: _Context) -> dict[str, Any]:
    target = context.config.target
    if target.sslmode == "disable":
        return {"skipped": True, "reason": "TLS disabled by CLOUDBOOT_SSLMODE=disable"}
    try:
        verifying = client_context(target)
    except TlsSetupError as exc:
        raise ConfigError(
            [str(exc)], hint="set CLOUDBOOT_CA_FILE to a readable PEM bundle, or to 'system'"
        ) from None
    assert verifying is not None  # noqa: S101 - None only under disable
    if verifying.verify_mode == ssl.CERT_REQUIRED:
        # Always ask for the host-name check too: under verify-ca a mismatch is then
        # reported without failing the step.
        verifying.check_hostname = True
        return _verified_handshake(context, verifying)
    return _describe_handshake(context, trusted=None, refusal=None)


def _verified_handshake(context: _Context, verifying: ssl.SSLContext) -> dict[str, Any]:
    try:
        sock = _tls_connect(context, verifying)
    except ssl.SSLCertVerificationError as exc:
        trusted, refusal = _trust_after_refusal(context, verifying, exc)
        return _describe_handshake(context, trusted=trusted, refusal=refusal)
    with sock:
        cert = sock.getpeercert() or {}
        detail = session_detail(sock, cert)
    detail.update(_trust_detail(context, trusted=True, host_matches=True))
    return detail


def _trust_after_refusal(
    context: _Context, verifying: ssl.SSLContext, exc: ssl.SSLCertVerificationError
) -> tuple[bool, ssl.SSLCertVerificationError]:
    """Whether the chain is trusted, and the refusal to explain. OpenSSL checks the
    name before the signatures and dates, so after a name mismatch the chain is
    verified again on its own: an expired certificate is the deeper cause."""
    if exc.verify_code not in NAME_MISMATCH:
        return False, exc
    verifying.check_hostname = False
    try:
        _tls_connect(context, verifying).close()
    except ssl.SSLCertVerificationError as deeper:
        return False, deeper
    return True, exc


def _describe_handshake(
    context: _Context, *, trusted: bool | None, refusal: ssl.SSLCertVerificationError | None
) -> dict[str, Any]:
    """A second handshake that checks nothing, to describe the certificate the server
    shows (under ``require``, or after a verifying handshake refused it)."""
    blind = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    blind.check_hostname = False
    blind.verify_mode = ssl.CERT_NONE
    with _tls_connect(context, blind) as sock:
        cert = decode_certificate(sock.getpeercert(binary_form=True) or b"")
        detail = session_detail(sock, cert)
    target = context.config.target
    host_matches = host_matches_certificate(target.host, cert)
    detail.update(_trust_detail(context, trusted=trusted, host_matches=host_matches))
    if refusal is None:
        return detail
    if refusal.verify_code in NAME_MISMATCH and target.sslmode == "verify-ca":
        return detail
    error, hint = explain_refusal(refusal, detail, host=target.host, ca_phrase=_ca_phrase(context))
    raise RefusedError(error, hint=hint, detail=detail)


def _ca_phrase(context: _Context) -> str:
    path = context.config.target.ca_file
    if context.config.settings.ca_file == "system":
        return f"the system CA bundle {path}"
    return f"the CA file {path}"


def _trust_detail(context: _Context, *, trusted: bool | None, host_matches: bool) -> dict[str, Any]:
    return {
        "host_name_matches": host_matches,
        "trusted": trusted,
        "ca_file": context.config.target.ca_file or "(not checked: sslmode require)",
    }


def _tls_connect(context: _Context, tls: ssl.SSLContext) -> ssl.SSLSocket:
    """A new TCP connection to the address the tcp step reached, the engine's way into
    TLS, and the handshake. Network trouble is a failed step (69), a failed negotiation
    too (77); a refused certificate is raised as is, for the caller to describe."""
    assert context.sockaddr is not None  # noqa: S101 - set by the tcp step
    family, sockaddr = context.sockaddr
    target = context.config.target
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(target.connect_timeout)
        sock.connect(sockaddr)
        context.engine.start_tls(sock)
        return tls.wrap_socket(sock, server_hostname=target.host)
    except ssl.SSLCertVerificationError:
        sock.close()
        raise
    except ssl.SSLError as exc:
        sock.close()
        raise RefusedError(
            f"the TLS handshake failed: {exc.reason or exc}",
            hint="the server and cloudboot share no TLS version or cipher (cloudboot "
            "needs TLS 1.2 or newer), or something in between is not a TLS endpoint",
        ) from None
    except OSError as exc:
        sock.close()
        raise UnavailableError(
            "the connection broke during the TLS handshake "
            f"({_socket_reason(exc, target.connect_timeout)})",
            hint="the server closed the connection: check its log, and that the port "
            "belongs to the configured engine",
        ) from None
    except BaseException:
        sock.close()
        raise


# --- auth, database, server ------------------------------------------------------------


def _step_auth(context: _Context) -> dict[str, Any]:
    target, engine = context.config.target, context.engine
    dbname = target.dbname
    try:
        context.connection = engine.connect(target, timeout=target.connect_timeout)
    except Exception as exc:  # noqa: BLE001 - the engine classifies its driver's errors
        failure = engine.classify(exc)
        if failure.reason is not Reason.MISSING_DATABASE:
            raise _failed(failure, context) from None
        # Prove the login anyway, where every account may go; the database step then
        # reports the missing database.
        dbname = ""
        try:
            context.connection = engine.connect(target, timeout=target.connect_timeout, dbname="")
        except Exception as again:  # noqa: BLE001 - as above
            raise _failed(engine.classify(again), context) from None
        context.database_missing = True
    try:
        user, tls = engine.session_info(context.connection)
    except Exception as exc:  # noqa: BLE001 - as above
        raise _failed(engine.classify(exc), context) from None
    return {
        "user": user,
        "logged_in_to": dbname or "(the maintenance database)",
        "session_tls": tls or "none (plaintext)",
    }


def _failed(failure: Failure, context: _Context) -> CloudbootError:
    """A connection failure as a failed step, named and hinted as the boot names it:
    refusals are 77, the other engine's port 78, anything else 69."""
    target = context.config.target
    if needs_identifying(failure):
        other = other_engine_at(target)
        failure = identified(failure, target, other.title if other else "")
    failure = tailored(failure, target)
    hint = failure.hint
    if failure.kind is Kind.AUTH:
        where = f"cloudboot read them from {context.config.source.label}"
        hint = f"{hint}; {where}" if hint else where
    return error_for(failure, failure.reason.value, hint)


def _step_database(context: _Context) -> dict[str, Any]:
    name = context.config.target.dbname
    if not context.database_missing:
        return {"name": name, "exists": True}
    create = context.config.settings.create_database
    if create:
        hint = (
            "cloudboot creates it on boot unless CLOUDBOOT_CREATE_DATABASE=false "
            "(the user needs the right to create databases)"
        )
    else:
        hint = (
            "CLOUDBOOT_CREATE_DATABASE=false, so cloudboot will not create it: create it, "
            "or set CLOUDBOOT_CREATE_DATABASE=true"
        )
    raise UnavailableError(
        f"database `{name}` does not exist",
        hint=hint,
        detail={"name": name, "exists": False, "create_database": create},
    )


def _step_server(context: _Context) -> dict[str, Any]:
    assert context.connection is not None  # noqa: S101 - set by the auth step
    try:
        return context.engine.server_info(context.connection)
    except Exception as exc:  # noqa: BLE001 - the engine classifies its driver's errors
        raise _failed(context.engine.classify(exc), context) from None


_STEPS: tuple[tuple[str, Callable[[_Context], dict[str, Any]]], ...] = (
    ("sources", _step_sources),
    ("dns", _step_dns),
    ("tcp", _step_tcp),
    ("tls", _step_tls),
    ("auth", _step_auth),
    ("database", _step_database),
    ("server", _step_server),
)
