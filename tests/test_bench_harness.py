"""``make bench`` still measures what it says: one trial of every figure, run as the
benchmark runs (its own throwaway TLS PostgreSQL, Debian's python3.11), must finish with
every row and a boot that really waited. No timing is asserted: the figures are the
benchmark's to print, this test only keeps the harness from rotting (a change to the
boot once made it fail without anybody running it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.server
def test_one_trial_of_every_figure_runs_and_reports_every_row(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    options = ["--trials", "1", "--overhead-trials", "1", "--fleet-trials", "1", "--no-peers"]
    argv = [sys.executable, str(ROOT / "benchmarks" / "run.py"), *options, "--seed", "1"]
    result = subprocess.run(
        [*argv, "--output", str(output)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(output.read_text())["figures"]
    rows = {(row["figure"], row["path"]): row for row in figures}
    ready = rows["time-to-ready: TLS login first succeeds -> exec", "cloudboot"]
    assert ready["details"]["false_ready"] == 0
    assert ready["samples"]
    assert ready["samples"][0] > 0  # the exec came after the first good login
    overhead = {path for figure, path in rows if figure == "boot overhead, database up"}
    assert {"cloudboot boot (-- true)", "cloudboot render --dry-run",
            "own share: boot - floor+login", "own share: render - floor",
            "cloudboot --version"} <= overhead  # fmt: skip
    hook_runs = rows["fleet start: 16 boots, 1 s locked hook", "hook body runs per release"]
    assert hook_runs["samples"] == [1]
    # The table is printed too, with the goal column filled in.
    assert "median <= 15, p90 <= 40, 0 false-ready" in result.stdout
