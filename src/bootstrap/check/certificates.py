"""Certificates as ``cloudboot check`` describes them: decoded without verifying,
matched against the host name, and a refusal explained in plain words."""

from __future__ import annotations

import _ssl
import ipaddress
import ssl
import tempfile
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

# OpenSSL's verification codes (x509_vfy.h) that cloudboot explains in words.
NAME_MISMATCH = frozenset({62, 64})  # host name, IP address
_UNTRUSTED_ISSUER = frozenset({2, 18, 19, 20, 21})  # no path to a CA in the CA file
X509_V_ERR_CERT_NOT_YET_VALID = 9
X509_V_ERR_CERT_HAS_EXPIRED = 10

RDS_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"

_NAME_KEYS = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
}


def session_detail(sock: ssl.SSLSocket, cert: Mapping[str, Any]) -> dict[str, Any]:
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
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".pem", prefix="cloudboot-cert-") as pem:
            pem.write(ssl.DER_cert_to_PEM_cert(der))
            pem.flush()
            decoded: dict[str, Any] = decoder(pem.name)
    except (OSError, ssl.SSLError, ValueError):
        return {}  # no writable temporary folder, or a certificate OpenSSL cannot read
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


def explain_refusal(
    exc: ssl.SSLCertVerificationError, detail: Mapping[str, Any], *, host: str, ca_phrase: str
) -> tuple[str, str]:
    """A plain-language cause and what to do, from OpenSSL's verification code;
    ``ca_phrase`` names the CA file in use ("the system CA bundle /etc/...")."""
    code = exc.verify_code
    issuer = detail.get("issuer") or "an unknown issuer"
    if code in NAME_MISMATCH:
        names = ", ".join(detail.get("names") or []) or detail.get("subject") or "other names"
        return (
            f"the server's certificate is for {names}, not {host}",
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
            f"the server's certificate is issued by {issuer}; {ca_phrase} does not contain it",
            _untrusted_hint(issuer),
        )
    return (f"the server's certificate is refused: {exc.verify_message}", _untrusted_hint(issuer))


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
