"""``make bench``: cloudboot side by side with the tools and boot paths users run today.

Starts its own throwaway TLS-only PostgreSQL (``tests/servers.py``), measures every
figure, prints one table and writes the same figures as JSON (default
``benchmarks/results/latest.json``). What each figure and baseline is: docs/benchmarks.md.

    .venv/bin/python benchmarks/run.py [--trials N] [--only NAME] [--variant NAME=DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boot_overhead
import fleet_start
import peers
import time_to_ready
from benchlib import (
    REPO,
    VENV,
    Figure,
    Interpreter,
    database,
    image_interpreter,
    machine,
    missing_programs,
    reference_interpreter,
)

FIGURES = ("ready", "overhead", "fleet")
MIN_READY_TRIALS = 20
BUSY_WARNING = 0.15


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--trials", type=int, default=MIN_READY_TRIALS,
        help=f"cold starts per waiter for time-to-ready (default {MIN_READY_TRIALS})",
    )  # fmt: skip
    parser.add_argument(
        "--overhead-trials", type=int, default=20,
        help="alternating rounds of the boot-overhead paths (default 20)",
    )  # fmt: skip
    parser.add_argument("--fleet-trials", type=int, default=8, help="fleet starts (default 8)")
    parser.add_argument(
        "--only", choices=FIGURES, action="append", help="run only this figure (repeatable)"
    )
    parser.add_argument(
        "--venv-python", action="store_true",
        help="also run the boot-overhead and fleet paths with the venv's python",
    )  # fmt: skip
    parser.add_argument(
        "--variant", action="append", default=[], metavar="NAME=DIR",
        help="also measure time-to-ready for the bootstrap package in DIR (a patched copy "
        "of src, outside the repository), as the row 'cloudboot [NAME]'",
    )  # fmt: skip
    parser.add_argument(
        "--no-peers", action="store_true",
        help="time-to-ready of cloudboot (and its variants) only: for iterating on the wait",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=None, help="seed of the random delays")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results/latest.json")
    return parser.parse_args(argv)


def _source() -> dict[str, Any]:
    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        )
        return result.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.1f} ms" if abs(value) < 100 else f"{value:.0f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:g}"


def table(figures: list[Figure], info: dict[str, Any]) -> str:
    """The one table ``make bench`` prints."""
    rows = [("figure", "path", "n", "median", "p90", "cpu", "goal", "met", "notes")]
    previous = ""
    for figure in figures:
        met = "" if figure.met is None else ("yes" if figure.met else "NO")
        p90 = (
            _value(max(figure.samples), figure.unit) + " (max)"
            if figure.unit == "runs"
            else _value(figure.p90, figure.unit)
        )
        cpu = "" if figure.cpu_median is None else _value(figure.cpu_median, "ms")
        rows.append(
            (
                figure.figure if figure.figure != previous else "",
                figure.path,
                str(len(figure.samples)),
                _value(figure.median, figure.unit),
                p90,
                cpu,
                figure.goal,
                met,
                figure.notes,
            )
        )
        previous = figure.figure
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    host = info["machine"]
    source = info["source"]
    versions = info["peers"]
    lines = [
        f"cloudboot benchmarks, {info['finished_at']} ({info['duration_s']:.0f} s), "
        f"commit {source['commit'][:10]}{' + local changes' if source['dirty'] else ''}; "
        + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in info["parts_s"].items()),
        f"machine: {host['cpu_model']}, {host['cores_usable']} cores; Linux {host['kernel']}; "
        f"{host['os']}",
        "load average (1, 5, 15 min): {} at start, {} at end".format(
            " ".join(map(str, host["load_average"])), " ".join(map(str, info["load_average_end"]))
        ),
        f"cloudboot run by: {info['reference']}; {host['postgresql']}; {host['jq']}",
        f"peers: wait-on {versions['wait-on']}, wait-port {versions['wait-port']} "
        f"(node {versions['node']}), wait-for-it {versions['wait-for-it']}, "
        f"{versions['pg_isready']}, {versions['psql']}",
    ]
    busy = host["cpu_busy_at_start"]
    lines[2] += f"; cores busy with other work just before the run: {busy:.0%}"
    if busy > BUSY_WARNING:
        lines.append("warning: the machine was busy when the run started; figures are inflated")
    lines.append("")
    for index, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _variants(specs: list[str]) -> dict[str, Interpreter]:
    variants = {}
    for spec in specs:
        name, _, folder = spec.partition("=")
        source = Path(folder).resolve()
        if not name or not (source / "bootstrap" / "__init__.py").exists():
            raise SystemExit(f"--variant {spec!r}: want NAME=DIR with DIR/bootstrap/")
        variant = image_interpreter(source, f"variant {name}")
        if variant is None:
            raise SystemExit("--variant needs /usr/bin/python3.11 (Debian's python3.11)")
        variants[name] = variant
    return variants


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    only = set(args.only or FIGURES)
    wants_peers = "ready" in only and not args.no_peers
    missing = missing_programs() + (peers.missing() if wants_peers else [])
    if missing:
        print(f"benchmarks need: {', '.join(missing)} (make bench installs them)", file=sys.stderr)
        return 1
    if os.geteuid() != 0:
        print("benchmarks start PostgreSQL with runuser: run them as root", file=sys.stderr)
        return 1
    if args.trials < MIN_READY_TRIALS:
        print(f"note: fewer than {MIN_READY_TRIALS} trials; figures are not comparable",
              file=sys.stderr)  # fmt: skip
    variants = _variants(args.variant)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    reference = reference_interpreter()
    interpreters = [reference] + ([VENV] if args.venv_python and reference != VENV else [])
    info: dict[str, Any] = {
        "machine": machine(),
        "source": _source(),
        "seed": seed,
        "reference": reference.python,
        "peers": peers.versions(),
    }
    started = time.monotonic()
    figures: list[Figure] = []
    parts: dict[str, float] = {}

    def part(name: str) -> None:
        print(f"{name} ...", file=sys.stderr, flush=True)
        parts[name] = time.monotonic()

    with database() as db, tempfile.TemporaryDirectory(prefix="cloudboot-bench-") as tmp:
        scratch = Path(tmp)
        parts["setup"] = started
        # Time-to-ready runs last: it leaves the server crashed and restored each trial.
        if "overhead" in only:
            part("overhead")
            figures += boot_overhead.measure(db, scratch, args.overhead_trials, interpreters)
        if "fleet" in only:
            part("fleet")
            figures += fleet_start.measure(db, scratch, args.fleet_trials, interpreters)
        if "ready" in only:
            part("ready")
            ready = time_to_ready.measure(
                db, scratch, args.trials, rng, reference, variants=variants, with_peers=wants_peers
            )
            figures = ready + figures
        parts["end"] = time.monotonic()
    marks = list(parts.items())
    info["parts_s"] = {
        name: round(end - at, 1) for (name, at), (_n, end) in itertools.pairwise(marks)
    }
    info["duration_s"] = round(time.monotonic() - started, 1)
    info["finished_at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print(table(figures, info))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    document = {**info, "figures": [figure.to_json() for figure in figures]}
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nJSON: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
