"""Which CA bundle verifies the database, as a real path every reader can open."""

from __future__ import annotations

import ssl
from collections.abc import Mapping

from .settings import Settings

DEBIAN_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def system_ca_file(environ: Mapping[str, str]) -> str:
    """The bundle OpenSSL uses by default: ``SSL_CERT_FILE`` when set (OpenSSL honours
    it), else the path compiled into OpenSSL, else Debian's."""
    if environ.get("SSL_CERT_FILE"):
        return environ["SSL_CERT_FILE"]
    paths = ssl.get_default_verify_paths()
    return paths.cafile or paths.openssl_cafile or DEBIAN_BUNDLE


def ca_file(settings: Settings, environ: Mapping[str, str]) -> str | None:
    """The CA file in use, or ``None`` when TLS is off or its certificate not checked.

    libpq 15 does not understand ``sslrootcert=system``, so ``system`` is resolved to
    the bundle's real path here, once, for every artifact.
    """
    if settings.sslmode in ("disable", "require"):
        return None
    if settings.ca_file == "system":
        return system_ca_file(environ)
    return settings.ca_file


class TlsSetupError(Exception):
    """The CA file cannot be loaded into a TLS context (missing, unreadable, not PEM).

    Raised before any connection is tried; :func:`bootstrap.connect.classify` files it
    under ``tls``, like libpq's "root certificate file ... does not exist".
    """


def client_context(settings: Settings, environ: Mapping[str, str]) -> ssl.SSLContext | None:
    """An ``SSLContext`` for a client such as PyMySQL, or ``None`` under ``disable``.

    ``verify-full``: chain and host name checked; ``verify-ca``: chain only;
    ``require``: encrypted, nothing checked (what libpq's ``require`` does without a
    root certificate). The CA file is :func:`ca_file`'s. Raises :class:`TlsSetupError`.
    """
    if settings.sslmode == "disable":
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.sslmode == "require":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    cafile = ca_file(settings, environ)
    try:
        context.load_verify_locations(cafile=cafile)
    except FileNotFoundError:
        raise TlsSetupError(f"CA file {cafile} does not exist") from None
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or "not PEM"
        raise TlsSetupError(f"CA file {cafile} cannot be loaded: {reason}") from None
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = settings.sslmode == "verify-full"
    return context
