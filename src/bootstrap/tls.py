"""Which CA bundle verifies the database, as a real path every reader can open, and the
TLS context cloudboot's own connections use."""

from __future__ import annotations

import ssl
from collections.abc import Mapping

from .target import SslMode, Target

DEBIAN_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def system_ca_file(environ: Mapping[str, str]) -> str:
    """The bundle OpenSSL uses by default: ``SSL_CERT_FILE`` when set (OpenSSL honours
    it), else the path compiled into OpenSSL, else Debian's."""
    if environ.get("SSL_CERT_FILE"):
        return environ["SSL_CERT_FILE"]
    paths = ssl.get_default_verify_paths()
    return paths.cafile or paths.openssl_cafile or DEBIAN_BUNDLE


def resolve_ca_file(sslmode: SslMode, setting: str, environ: Mapping[str, str]) -> str | None:
    """The CA file in use, or ``None`` when TLS is off or the certificate not checked.

    libpq 15 does not understand ``sslrootcert=system``, so ``system`` is resolved to
    the bundle's real path here, once, for every artifact and connection.
    """
    if sslmode in ("disable", "require"):
        return None
    return system_ca_file(environ) if setting == "system" else setting


class TlsSetupError(Exception):
    """The CA file cannot be loaded into a TLS context (missing, unreadable, not PEM).

    Raised before any connection is tried; the engines classify it as
    :attr:`bootstrap.failures.Reason.CA_FILE_UNUSABLE`.
    """


def client_context(target: Target) -> ssl.SSLContext | None:
    """An ``SSLContext`` for a client such as PyMySQL, or ``None`` under ``disable``.

    ``verify-full``: chain and host name checked; ``verify-ca``: chain only;
    ``require``: encrypted, nothing checked (what libpq's ``require`` does without a
    root certificate). Raises :class:`TlsSetupError`.
    """
    if target.sslmode == "disable":
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if target.ca_file is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        context.load_verify_locations(cafile=target.ca_file)
    except FileNotFoundError:
        raise TlsSetupError(f"CA file {target.ca_file} does not exist") from None
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or "not PEM"
        raise TlsSetupError(f"CA file {target.ca_file} cannot be loaded: {reason}") from None
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = target.sslmode == "verify-full"
    return context
