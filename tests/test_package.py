"""The package builds with the lowest build backend it declares, carries its licence,
ships no tests it cannot run, and installs from its wheel into a fresh virtual
environment of Debian's python3 (the images' interpreter), console script included."""

from __future__ import annotations

import email.parser
import json
import shutil
import subprocess
import sys
import tarfile
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DEBIAN_PYTHON = Path("/usr/bin/python3")


def _lowest_backend() -> str:
    (requirement,) = PYPROJECT["build-system"]["requires"]
    name, _, lowest = requirement.partition(">=")
    assert name == "setuptools", requirement
    return str(lowest)


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        **kwargs,  # type: ignore[call-overload]
    )
    assert result.returncode == 0, f"{argv}\n{result.stdout}\n{result.stderr}"
    return result  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist and the wheel, built offline from a copy of the source by exactly the
    lowest setuptools the project declares."""
    work = tmp_path_factory.mktemp("build")
    builder = work / "builder"
    venv.create(builder, with_pip=True)
    python = builder / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--quiet", f"setuptools=={_lowest_backend()}"])
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "node_modules", "__pycache__", "*.egg-info", ".coverage*",
        ".pytest_cache", ".mypy_cache", ".ruff_cache", "results",
    ))  # fmt: skip
    dist = work / "dist"
    # (The directory is read first: each build_* call rewrites sys.argv for setup().)
    build = (
        "import sys; from setuptools import build_meta as b; d = sys.argv[1]; "
        "b.build_sdist(d); b.build_wheel(d)"
    )
    _run([str(python), "-c", build, str(dist)], cwd=source)
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    return sdist, wheel


def test_the_sdist_carries_the_licence_and_no_tests(built: tuple[Path, Path]) -> None:
    sdist, _ = built
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "README.md", "pyproject.toml", "src/bootstrap/__init__.py"} <= names
    assert "src/bootstrap/py.typed" in names
    assert not [name for name in names if name.startswith(("tests/", "benchmarks/", "images/"))]


def test_the_wheel_carries_the_licence_the_metadata_and_py_typed(built: tuple[Path, Path]) -> None:
    _, wheel = built
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(archive.read(metadata_name).decode())
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert "bootstrap/py.typed" in names
    assert metadata["License-Expression"] == "MIT"
    classifiers = metadata.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert any(c.startswith("Operating System ::") for c in classifiers)
    assert any(c.startswith("Topic ::") for c in classifiers)
    assert metadata.get_all("Project-URL")
    assert metadata["Requires-Python"] == ">=3.11"


def test_the_wheel_installs_into_debians_python_and_the_script_runs(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    _, wheel = built
    target = tmp_path / "venv"
    _run([str(DEBIAN_PYTHON), "-m", "venv", str(target)])
    # The dependencies are PyPI's to give; the console script's --version needs none of
    # them (it imports nothing heavy), so the wheel alone proves the install.
    _run([str(target / "bin" / "pip"), "install", "--quiet", "--no-deps", str(wheel)])
    version = _run([str(target / "bin" / "cloudboot"), "--version"]).stdout
    assert version.startswith("cloudboot ")
    assert _run([str(target / "bin" / "python"), "-m", "bootstrap", "-V"]).stdout == version
    assert sys.version_info >= (3, 11)


def test_every_public_name_resolves_and_every_error_class_is_public() -> None:
    # In a fresh interpreter: the lazy names must each import, and nothing of a stage
    # may be left out of the library's face (an error class above all: callers catch it).
    probe = (
        "import inspect, json, bootstrap, bootstrap.errors as e\n"
        "names = sorted(set(bootstrap.__all__) - {'__version__'})\n"
        "missing = [n for n in names if getattr(bootstrap, n, None) is None]\n"
        "errors = sorted(n for n, c in vars(e).items() if inspect.isclass(c)\n"
        "                and issubclass(c, e.CloudbootError))\n"
        "print(json.dumps([names, missing, errors]))\n"
    )
    result = _run([sys.executable, "-c", probe])
    names, missing, errors = json.loads(result.stdout)
    assert missing == []
    assert set(errors) <= set(names), set(errors) - set(names)
    assert {"LockLostError", "LockTimeoutError"} <= set(errors)
