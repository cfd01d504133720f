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
