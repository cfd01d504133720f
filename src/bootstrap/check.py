"""``cloudboot check``: diagnose the way to the database one step at a time.

Steps, in order: ``sources`` (credentials and settings found; variable names only),
``dns``, ``tcp``, ``tls`` (handshake and certificate, done by cloudboot itself so that
an untrusted certificate can still be described), ``auth``, ``database``, ``server``.
The first failing step ends the check; its exit code is the class of the failure:
69 unreachable (or not there yet), 77 refused (TLS or authentication), 78 configuration.

Nothing here prints or returns a secret: every string of the report passes through the
same redaction as the logs before it leaves :class:`Report`.
"""

from __future__ import annotations

import _ssl
import contextlib
import errno
import ipaddress
import json
import socket
import ssl
import struct
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .connect import MAINTENANCE_DBNAME, Connection, Failure, classify, connect
from .credentials import DatabaseCredentials
from .errors import ConfigError
from .logs import redact
from .render import render
from .settings import Settings
from .sources import load
from .tls import TlsSetupError, ca_file, client_context

EX_UNAVAILABLE = 69
EX_NOPERM = 77
EX_CONFIG = 78

STEP_NAMES = ("sources", "dns", "tcp", "tls", "auth", "database", "server")

RDS_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"


# --- the report ------------------------------------------------------------------------


@dataclass
class Step:
    """One step's outcome. ``exit_code`` is 0 when it passed; it is not in the JSON."""

    name: str
    ok: bool
    elapsed_ms: float
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    hint: str | None = None
    exit_code: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "elapsed_ms": self.elapsed_ms,
            "detail": self.detail,
            "error": self.error,
            "hint": self.hint,
        }


@dataclass
class Report:
    """The steps that ran, in order; only the last one may have failed."""

    steps: list[Step]

    @property
    def ok(self) -> bool:
        return all(step.ok for step in self.steps)

    @property
    def exit_code(self) -> int:
        return next((step.exit_code for step in self.steps if not step.ok), 0)

    def as_dict(self) -> dict[str, Any]:
        # Last line of defence: the same redaction as the logs, over every string.
        result: dict[str, Any] = redact(
            {"ok": self.ok, "steps": [step.as_dict() for step in self.steps]}
        )
        return result

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, ensure_ascii=False)

    def to_text(self) -> str:
        data = self.as_dict()
        lines: list[str] = []
        for step in data["steps"]:
            mark = "PASS" if step["ok"] else "FAIL"
            lines.append(f"[{mark}] {step['name']} ({step['elapsed_ms']:.1f} ms)")
            lines += [
                f"       {key}: {_text_value(value)}" for key, value in step["detail"].items()
            ]
            if step["error"]:
                lines.append(f"       error: {step['error']}")
            if step["hint"]:
                lines.append(f"       what to do: {step['hint']}")
        if self.ok:
            lines.append(f"all {len(self.steps)} steps passed")
        else:
            lines.append(f"check failed at step {self.steps[-1].name} (exit {self.exit_code})")
        return "\n".join(lines)


def _text_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_text_value(v) for v in value) or "-"
    return str(value)


class StepFailed(Exception):
    """Raised by a step: what went wrong, what to do, and the class of the failure."""

    def __init__(
        self,
        error: str,
        *,
        hint: str | None,
        exit_code: int,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.hint = hint
        self.exit_code = exit_code
        self.detail = dict(detail or {})


# --- running ---------------------------------------------------------------------------


@dataclass
class _Context:
    """What the steps learn and hand on to the next ones."""

    environ: Mapping[str, str]
    settings: Settings | None = None
    credentials: DatabaseCredentials | None = None
    addresses: list[tuple[socket.AddressFamily, Any]] = field(default_factory=list)
    sockaddr: tuple[socket.AddressFamily, Any] | None = None
    connection: Connection | None = None
    database_missing: bool = False

    @property
    def creds(self) -> DatabaseCredentials:
        assert self.credentials is not None  # noqa: S101 - set by the sources step
        return self.credentials

    @property
    def config(self) -> Settings:
        assert self.settings is not None  # noqa: S101 - set by the sources step
        return self.settings

    def close(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):
                self.connection.close()
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
    except StepFailed as failed:
        return Step(
            name,
            ok=False,
            elapsed_ms=_ms_since(started),
            detail=failed.detail,
            error=failed.error,
            hint=failed.hint,
            exit_code=failed.exit_code,
        )
    return Step(name, ok=True, elapsed_ms=_ms_since(started), detail=detail)


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


# --- sources ---------------------------------------------------------------------------


def _step_sources(context: _Context) -> dict[str, Any]:
    try:
        settings, credentials = load(context.environ)
        # The boot renders before it connects; a rendering problem stops it just the same.
        render(credentials, settings, context.environ)
    except ConfigError as exc:
        raise StepFailed(
            str(exc),
            hint="fix the variables and settings named above (values are never shown); "
            "README lists where cloudboot looks for credentials",
            exit_code=EX_CONFIG,
            detail={"problems": list(exc.problems)},
        ) from None
    context.settings, context.credentials = settings, credentials
    return {
        "source": credentials.source,
        "variables": list(credentials.variables),
        "config_file": settings.config,
        "engine": credentials.engine,
        "host": credentials.host,
        "port": credentials.port,
        "database": credentials.dbname,
        "user": credentials.username,
        "sslmode": settings.sslmode,
        "ca_file": ca_file(settings, context.environ),
    }


# --- dns -------------------------------------------------------------------------------


def _step_dns(context: _Context) -> dict[str, Any]:
    host, port = context.creds.host, context.creds.port
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise StepFailed(
            f"the host name {host} does not resolve ({exc.strerror})",
            hint=_dns_hint(exc, context.creds.source),
            exit_code=EX_UNAVAILABLE,
        ) from None
    for family, _type, _proto, _name, sockaddr in infos:
        if (family, sockaddr) not in context.addresses:
            context.addresses.append((family, sockaddr))
    return {"host": host, "addresses": [sockaddr[0] for _, sockaddr in context.addresses]}


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
    timeout = context.config.connect_timeout
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
    raise StepFailed(
        f"cannot connect to port {context.creds.port}: " + "; ".join(failures),
        hint=_tcp_hint(last, context.creds.port),
        exit_code=EX_UNAVAILABLE,
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
    settings = context.config
    if settings.sslmode == "disable":
        return {"skipped": True, "reason": "TLS disabled by CLOUDBOOT_SSLMODE=disable"}
    try:
        verifying = client_context(settings, context.environ)
    except TlsSetupError as exc:
        raise StepFailed(
            str(exc),
            hint="set CLOUDBOOT_CA_FILE to a readable PEM bundle, or to 'system'",
            exit_code=EX_CONFIG,
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
        detail = _session_detail(sock, cert)
    detail.update(_trust_detail(context, trusted=True, host_matches=True))
    return detail


def _trust_after_refusal(
    context: _Context, verifying: ssl.SSLContext, exc: ssl.SSLCertVerificationError
) -> tuple[bool, ssl.SSLCertVerificationError]:
    """Whether the chain is trusted, and the refusal to explain. OpenSSL checks the
    name before the signatures and dates, so after a name mismatch the chain is
    verified again on its own: an expired certificate is the deeper cause."""
    if exc.verify_code not in _NAME_MISMATCH:
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
        detail = _session_detail(sock, cert)
    host_matches = host_matches_certificate(context.creds.host, cert)
    detail.update(_trust_detail(context, trusted=trusted, host_matches=host_matches))
    if refusal is None:
        return detail
    mode = context.config.sslmode
    if refusal.verify_code in _NAME_MISMATCH and mode == "verify-ca":
        return detail
    error, hint = _explain_refusal(refusal, detail, context)
    raise StepFailed(error, hint=hint, exit_code=EX_NOPERM, detail=detail)


def _trust_detail(context: _Context, *, trusted: bool | None, host_matches: bool) -> dict[str, Any]:
    return {
        "host_name_matches": host_matches,
        "trusted": trusted,
        "ca_file": ca_file(context.config, context.environ) or "(not checked: sslmode require)",
    }


def _tls_connect(context: _Context, tls: ssl.SSLContext) -> ssl.SSLSocket:
    """A new TCP connection to the address the tcp step reached, the engine's way into
    TLS, and the handshake."""
    assert context.sockaddr is not None  # noqa: S101 - set by the tcp step
    family, sockaddr = context.sockaddr
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        return _handshake(context, sock, sockaddr, tls)
    except BaseException:
        sock.close()
        raise


def _handshake(
    context: _Context, sock: socket.socket, sockaddr: Any, tls: ssl.SSLContext
) -> ssl.SSLSocket:
    """Network trouble is a failed step (69), a failed negotiation too (77); a refused
    certificate is raised as is, for the caller to describe."""
    timeout = context.config.connect_timeout
    try:
        sock.settimeout(timeout)
        sock.connect(sockaddr)
        if context.creds.engine == "postgres":
            _start_tls_postgres(sock)
        else:
            _start_tls_mysql(sock)
        return tls.wrap_socket(sock, server_hostname=context.creds.host)
    except ssl.SSLCertVerificationError:
        raise
    except ssl.SSLError as exc:
        raise StepFailed(
            f"the TLS handshake failed: {exc.reason or exc}",
            hint="the server and cloudboot share no TLS version or cipher (cloudboot "
            "needs TLS 1.2 or newer), or something in between is not a TLS endpoint",
            exit_code=EX_NOPERM,
        ) from None
    except OSError as exc:
        raise StepFailed(
            f"the connection broke during the TLS handshake ({_socket_reason(exc, timeout)})",
            hint="the server closed the connection: check its log, and that the port "
            "belongs to the configured engine",
            exit_code=EX_UNAVAILABLE,
        ) from None


# OpenSSL's verification codes (x509_vfy.h) that cloudboot explains in words.
_NAME_MISMATCH = frozenset({62, 64})  # host name, IP address
_UNTRUSTED_ISSUER = frozenset({2, 18, 19, 20, 21})  # no path to a CA in the CA file
X509_V_ERR_CERT_NOT_YET_VALID = 9
X509_V_ERR_CERT_HAS_EXPIRED = 10

# The SSLRequest packet: length 8, then the magic request code 1234.5679.
_PG_SSL_REQUEST = struct.pack("!II", 8, 80877103)


def _start_tls_postgres(sock: socket.socket) -> None:
    """PostgreSQL speaks plaintext first: ask for TLS, and expect ``S``."""
    sock.sendall(_PG_SSL_REQUEST)
    answer = sock.recv(1)
    if answer == b"S":
        return
    if answer == b"N":
        raise StepFailed(
            "the server does not accept TLS (it answered the SSLRequest with 'N')",
            hint="turn on ssl on the server (on RDS it is on unless the parameter group "
            "turns it off), or set CLOUDBOOT_SSLMODE=disable if plaintext is intended",
            exit_code=EX_NOPERM,
        )
    if not answer:
        raise OSError(errno.ECONNRESET, "connection closed by the server")
    raise StepFailed(
        "the server does not speak PostgreSQL's protocol",
        hint="check the port and CLOUDBOOT_ENGINE: this may be a MySQL-family server",
        exit_code=EX_CONFIG,
    )


_MYSQL_CLIENT_SSL = 0x0800
_MYSQL_CAPABILITIES = 0x0200 | _MYSQL_CLIENT_SSL | 0x8000 | 0x80000  # 4.1, SSL, secure, plugin
_MYSQL_UTF8MB4 = 45


def _start_tls_mysql(sock: socket.socket) -> None:
    """The MySQL family greets first; answer with an SSL request packet (the first 32
    bytes of a handshake response with ``CLIENT_SSL``), after which TLS starts."""
    greeting = _read_mysql_packet(sock)
    if greeting[:1] == b"\xff":
        code = int.from_bytes(greeting[1:3], "little")
        message = greeting[3:].decode("utf-8", "replace")
        raise StepFailed(
            f"the server refused the connection before TLS: {code} {message}",
            hint="1040: too many connections; 1129: the host is blocked (FLUSH HOSTS)",
            exit_code=EX_UNAVAILABLE,
        )
    if greeting[:1] != b"\x0a":
        raise StepFailed(
            "the server does not speak the MySQL protocol",
            hint="check the port and CLOUDBOOT_ENGINE: this may be a PostgreSQL server",
            exit_code=EX_CONFIG,
        )
    after_version = greeting.index(b"\0", 1) + 1
    # connection id (4), auth data (8), filler (1), then the low capability bytes.
    low = after_version + 13
    capabilities = int.from_bytes(greeting[low : low + 2], "little")
    if not capabilities & _MYSQL_CLIENT_SSL:
        raise StepFailed(
            "the server does not offer TLS",
            hint="configure ssl-cert and ssl-key on the server, or set "
            "CLOUDBOOT_SSLMODE=disable if plaintext is intended",
            exit_code=EX_NOPERM,
        )
    body = struct.pack("<IIB23x", _MYSQL_CAPABILITIES, 1 << 24, _MYSQL_UTF8MB4)
    sock.sendall(len(body).to_bytes(3, "little") + b"\x01" + body)


def _read_mysql_packet(sock: socket.socket) -> bytes:
    header = _recv_exactly(sock, 4)
    return _recv_exactly(sock, int.from_bytes(header[:3], "little"))


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError(errno.ECONNRESET, "connection closed by the server")
        data += chunk
    return data


# --- certificates ----------------------------------------------------------------------

_NAME_KEYS = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
}


def _session_detail(sock: ssl.SSLSocket, cert: Mapping[str, Any]) -> dict[str, Any]:
    cipher = sock.cipher()
    detail: dict[str, Any] = {
        "protocol": sock.version(),
        "cipher": cipher[0] if cipher else None,
    }
    detail.update(certificate_detail(cert))
    return detail


def certificate_detail(cert: Mapping[str, Any]) -> dict[str, Any]:
    """Subject, issuer, validity and names of a certificate in ``getpeercert()`` form."""
    not_after = _cert_time(cert.get("notAfter"))
    return {
        "subject": format_name(cert.get("subject", ())),
        "issuer": format_name(cert.get("issuer", ())),
        "not_before": _iso(_cert_time(cert.get("notBefore"))),
        "not_after": _iso(not_after),
        "days_left": None if not_after is None else int((not_after - time.time()) // 86400),
        "names": [_alt_name(kind, value) for kind, value in _alt_names(cert)],
    }


def format_name(name: Iterable[Iterable[tuple[str, str]]]) -> str:
    """An X.509 name as ``CN=..., O=...`` (the order the certificate gives)."""
    parts = [f"{_NAME_KEYS.get(key, key)}={value}" for rdn in name for key, value in rdn]
    return ", ".join(parts)


def _name_values(name: Iterable[Iterable[tuple[str, str]]], key: str) -> list[str]:
    return [value for rdn in name for k, value in rdn if k == key]


def _alt_names(cert: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(str(kind), str(value)) for kind, value in cert.get("subjectAltName", ())]


def _alt_name(kind: str, value: str) -> str:
    if kind != "IP Address":
        return f"{kind}:{value}"
    # OpenSSL spells an IPv6 address in full and may end it with a newline.
    try:
        return f"IP:{ipaddress.ip_address(value.strip())}"
    except ValueError:
        return f"IP:{value}"


def _cert_time(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return float(ssl.cert_time_to_seconds(value))
    except ValueError:
        return None


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def decode_certificate(der: bytes) -> dict[str, Any]:
    """A DER certificate in ``getpeercert()`` form, without extra dependencies.

    ``getpeercert()`` returns nothing for a certificate it did not verify, and the only
    decoder in the standard library is ``_ssl._test_decode_cert``, which reads a PEM
    file: a certificate is public, so a temporary file is harmless. Should a Python
    drop that helper, the certificate is described as empty rather than crashing.
    """
    decoder = getattr(_ssl, "_test_decode_cert", None)
    if decoder is None or not der:
        return {}
    with tempfile.NamedTemporaryFile("w", suffix=".pem", prefix="cloudboot-cert-") as pem:
        pem.write(ssl.DER_cert_to_PEM_cert(der))
        pem.flush()
        decoded: dict[str, Any] = decoder(pem.name)
    return decoded


def host_matches_certificate(host: str, cert: Mapping[str, Any]) -> bool:
    """Whether ``host`` is a name or address the certificate is issued for (RFC 6125:
    subjectAltName first, the common name only when there are no DNS names; a ``*``
    only as the whole left-most label)."""
    names = _alt_names(cert)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        return any(kind == "IP Address" and _same_ip(value, address) for kind, value in names)
    dns = [value for kind, value in names if kind == "DNS"]
    patterns = dns or _name_values(cert.get("subject", ()), "commonName")
    return any(_dns_matches(pattern, host) for pattern in patterns)


def _same_ip(value: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return ipaddress.ip_address(value.strip()) == address
    except ValueError:
        return False


def _dns_matches(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        label, _, rest = host.partition(".")
        return bool(label) and rest == pattern[2:]
    return pattern == host


def _explain_refusal(
    exc: ssl.SSLCertVerificationError, detail: Mapping[str, Any], context: _Context
) -> tuple[str, str]:
    """A plain-language cause and what to do, from OpenSSL's verification code."""
    code = exc.verify_code
    issuer = detail.get("issuer") or "an unknown issuer"
    if code in _NAME_MISMATCH:
        names = ", ".join(detail.get("names") or []) or detail.get("subject") or "other names"
        return (
            f"the server's certificate is for {names}, not {context.creds.host}",
            "connect by a name the certificate lists (for RDS/Aurora: the endpoint "
            "itself, not a CNAME or an IP address), or set CLOUDBOOT_SSLMODE=verify-ca",
        )
    if code == X509_V_ERR_CERT_HAS_EXPIRED:
        return (
            f"the server's certificate expired on {detail.get('not_after')}",
            "the server must renew its certificate (RDS: switch the instance to a "
            "current CA such as rds-ca-rsa2048-g1); check this machine's clock too",
        )
    if code == X509_V_ERR_CERT_NOT_YET_VALID:
        return (
            f"the server's certificate is not valid before {detail.get('not_before')}",
            "check this machine's clock",
        )
    if code in _UNTRUSTED_ISSUER:
        return (
            f"the server's certificate is issued by {issuer}; {_ca_phrase(context)} "
            "does not contain it",
            _untrusted_hint(issuer),
        )
    return (f"the server's certificate is refused: {exc.verify_message}", _untrusted_hint(issuer))


def _ca_phrase(context: _Context) -> str:
    path = ca_file(context.config, context.environ)
    if context.config.ca_file == "system":
        return f"the system CA bundle {path}"
    return f"the CA file {path}"


def _untrusted_hint(issuer: str) -> str:
    if "amazon rds" in issuer.lower() or "rds" in issuer.lower().split():
        return (
            f"for RDS/Aurora add the RDS global bundle ({RDS_BUNDLE_URL}) to the image "
            "and set CLOUDBOOT_CA_FILE to it"
        )
    return (
        f"set CLOUDBOOT_CA_FILE to a bundle holding the certificate of {issuer} (or of "
        "the root above it); 'system' is the operating system's bundle"
    )


# --- auth, database, server ------------------------------------------------------------


def _step_auth(context: _Context) -> dict[str, Any]:
    creds, settings = context.creds, context.config
    dbname = creds.dbname
    try:
        context.connection = connect(creds, settings, context.environ)
    except Exception as exc:  # noqa: BLE001 - classify() knows both drivers' errors
        failure = classify(exc)
        if failure.kind != "missing_database":
            raise _failed(failure, context) from None
        # Prove the login anyway, where every account may go; the database step then
        # reports the missing database.
        dbname = MAINTENANCE_DBNAME[creds.engine]
        try:
            context.connection = connect(creds, settings, context.environ, dbname=dbname)
        except Exception as again:  # noqa: BLE001 - as above
            raise _failed(classify(again), context) from None
        context.database_missing = True
    user, tls = _session(context)
    return {"user": user, "logged_in_to": dbname or "(no database)", "session_tls": tls}


def _failed(failure: Failure, context: _Context) -> StepFailed:
    """A connection failure as a failed step: refusals are 77, anything else 69."""
    hint = failure.hint
    if failure.kind == "auth":
        where = f"cloudboot read them from {context.creds.source}"
        hint = f"{hint}; {where}" if hint else where
    code = EX_NOPERM if failure.kind in ("auth", "tls") else EX_UNAVAILABLE
    detail = {"message": failure.detail} if failure.detail else {}
    return StepFailed(failure.reason, hint=hint, exit_code=code, detail=detail)


def _query(context: _Context, sql: str) -> tuple[Any, ...]:
    assert context.connection is not None  # noqa: S101 - set by the auth step
    cursor = context.connection.cursor()
    try:
        cursor.execute(sql)
        row = cursor.fetchone()
    finally:
        cursor.close()
    return tuple(row or ())


def _session(context: _Context) -> tuple[str, str]:
    """The user the server sees and the TLS version of this very session."""
    if context.creds.engine == "postgres":
        user, version = _query(
            context,
            "SELECT current_user, (SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid())",
        )
    else:
        user, version = _query(
            context,
            "SELECT CURRENT_USER(), (SELECT VARIABLE_VALUE FROM information_schema"
            ".SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_version')",
        )
    return str(user), str(version or "none (plaintext)")


def _step_database(context: _Context) -> dict[str, Any]:
    name = context.creds.dbname
    if not context.database_missing:
        return {"name": name, "exists": True}
    if context.config.create_database:
        hint = (
            "cloudboot creates it on boot unless CLOUDBOOT_CREATE_DATABASE=false "
            "(the user needs the right to create databases)"
        )
    else:
        hint = (
            "CLOUDBOOT_CREATE_DATABASE=false, so cloudboot will not create it: create it, "
            "or set CLOUDBOOT_CREATE_DATABASE=true"
        )
    raise StepFailed(
        f"database `{name}` does not exist",
        hint=hint,
        exit_code=EX_UNAVAILABLE,
        detail={"name": name, "exists": False, "create_database": context.config.create_database},
    )


def _step_server(context: _Context) -> dict[str, Any]:
    try:
        if context.creds.engine == "postgres":
            return _postgres_server(context)
        return _mysql_server(context)
    except Exception as exc:  # noqa: BLE001 - classify() knows both drivers' errors
        raise _failed(classify(exc), context) from None


def _postgres_server(context: _Context) -> dict[str, Any]:
    version, product, encoding, collate, ctype = _query(
        context,
        "SELECT current_setting('server_version'), version(), "
        "pg_encoding_to_char(encoding), datcollate, datctype "
        "FROM pg_database WHERE datname = current_database()",
    )
    return {
        "version": version,
        "product": product,
        "encoding": encoding,
        "lc_collate": collate,
        "lc_ctype": ctype,
    }


def _mysql_server(context: _Context) -> dict[str, Any]:
    version, comment, charset, collation, db_charset, db_collation = _query(
        context,
        "SELECT VERSION(), @@version_comment, @@character_set_server, "
        "@@collation_server, @@character_set_database, @@collation_database",
    )
    return {
        "version": version,
        "product": comment,
        "server_charset": charset,
        "server_collation": collation,
        "database_charset": db_charset,
        "database_collation": db_collation,
    }


_STEPS: tuple[tuple[str, Callable[[_Context], dict[str, Any]]], ...] = (
    ("sources", _step_sources),
    ("dns", _step_dns),
    ("tcp", _step_tcp),
    ("tls", _step_tls),
    ("auth", _step_auth),
    ("database", _step_database),
    ("server", _step_server),
)
