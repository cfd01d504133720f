"""Boot overhead with the database already up: wall and CPU time per boot, cloudboot's
own share above the floor its mandated dependencies set, and its peak memory.

The paths alternate in one run (their order rotates every round and reverses every
other round; each path runs next to the floor it is compared with), each in a fresh,
empty ``HOME`` so that every artifact is created, as in a container's first boot:

* the tutorials' shell path (``shell/tutorial-boot.sh``): five ``jq`` calls, three
  ``echo``-written files, ``sed`` on a fresh copy of ``wp-config.php``, exec ``true``;
* cloudboot's boot, ``cloudboot -- true``, for the Phoenix case: ``DB_SECRET``, the
  image's TOML file, the ecto URL, ``.pgpass``, ``.pg_service.conf``,
  ``application.profile``, the readiness probe (a TLS login and ``select 1``), exec;
* ``cloudboot render --dry-run``, ``cloudboot --version`` and ``cloudboot --help``;
* the floors: a bare Python importing what SPEC mandates, ending as cloudboot ends,
  with and without one verified-TLS login (so that the login's share is measured on
  its own and the boot's own share can be stated without it).

By default every cloudboot path runs with Debian's ``/usr/bin/python3.11`` (the
images' interpreter, the reference of these figures); ``interpreters`` may add others.
Each figure is the wall time from the spawn to the exit of ``true`` (or of cloudboot)
and the CPU time (user + system) of that process, taken by ``spawn.py``. Peak RSS is
``ru_maxrss``: Linux keeps the largest resident set across an exec, and ``true`` is far
smaller than cloudboot.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchlib import (
    SHELL_DIR,
    WP_SAMPLE,
    Database,
    Figure,
    Interpreter,
    cloudboot_env,
    fresh_dir,
    launch,
    ms,
    require_event,
    shell_env,
)

SPAWN = Path(__file__).resolve().parent / "spawn.py"

GOAL_BOOT_SHARE_MS = 25.0
GOAL_RENDER_SHARE_MS = 15.0

TITLE = "boot overhead, database up"
SHELL = "tutorials' shell path (5 jq, 3 echo files, sed, exec true)"
BOOT = "cloudboot boot (-- true)"
RENDER = "cloudboot render --dry-run"
VERSION = "cloudboot --version"
HELP = "cloudboot --help"
FLOOR_BOOT = "floor: import the boot's dependencies, exec true"
FLOOR_LOGIN = "floor + login: the same, one TLS login + select 1"
FLOOR_RENDER = "floor: import render's dependencies"

# What cloudboot cannot go below: the interpreter's start and the imports of the
# runtime dependencies SPEC mandates (render: pydantic-settings, structlog; the boot:
# also psycopg and tenacity), in cloudboot's order: its main freezes the collector's
# objects (gc.freeze) once the settings stack is imported, before the wait imports
# tenacity and psycopg; render exits, the boot execs.
FLOOR_RENDER_CODE = "import gc, pydantic_settings, structlog; gc.freeze()"
_IMPORTS = (
    "import gc, json, os, pydantic_settings, structlog; gc.freeze(); import tenacity, psycopg"
)
FLOOR_BOOT_CODE = f"{_IMPORTS}; os.execvp('true', ['true'])"
# The boot's floor with the one thing every boot must also do: a verified-TLS login
# and select 1, as psycopg makes it for cloudboot (same libpq, same server).
FLOOR_LOGIN_CODE = f"""{_IMPORTS}
s = json.loads(os.environ["DB_SECRET"])
with psycopg.connect(host=s["host"], port=s["port"], dbname=s["dbname"],
        user=s["username"], password=s["password"], sslmode="verify-full",
        sslrootcert=os.environ["BENCH_CA_FILE"], autocommit=True) as c:
    c.execute("select 1").fetchall()
os.execvp("true", ["true"])
"""

HEAVY = ("pydantic", "pydantic_core", "pydantic_settings", "structlog", "psycopg",
         "tenacity", "pymysql", "asyncio")  # fmt: skip


@dataclass(frozen=True)
class Sample:
    seconds: float
    rss_mb: float
    cpu_seconds: float


Runner = Callable[[], Sample]


def _timed(argv: Sequence[str], env: dict[str, str], workdir: Path, booted: bool) -> Sample:
    result = workdir / "spawn.json"
    run = launch([sys.executable, str(SPAWN), str(result), *argv], env, workdir)
    code, _usage = run.finish(timeout=60)
    report = json.loads(result.read_text()) if code == 0 else {}
    if report.get("exit_code") != 0:
        raise RuntimeError(f"{argv[0]} failed ({report or code}): {run.tail()}")
    if booted:
        require_event(run.stderr, "cloudboot.wait.ready", "boot overhead")
    return Sample(float(report["seconds"]), report["maxrss_kb"] / 1024.0,
                  float(report["cpu_seconds"]))  # fmt: skip


def _name(path: str, interpreter: Interpreter, reference: Interpreter) -> str:
    return path if interpreter == reference else f"{path}, {interpreter.label}"


def _runners(db: Database, scratch: Path, interpreters: Sequence[Interpreter]) -> dict[str, Runner]:
    reference = interpreters[0]

    def shell() -> Sample:
        home = fresh_dir(scratch, "home")
        wp_config = home / "wp-config.php"
        shutil.copyfile(WP_SAMPLE, wp_config)
        env = shell_env(db, home, WP_CONFIG_PATH=str(wp_config))
        return _timed(["/bin/sh", str(SHELL_DIR / "tutorial-boot.sh"), "true"], env, home,
                      booted=False)  # fmt: skip

    def cloudboot(interpreter: Interpreter, *args: str, booted: bool = False) -> Runner:
        def run() -> Sample:
            home = fresh_dir(scratch, "home")
            # `true` is the server command here, as the floors end with it.
            env = cloudboot_env(db, home, interpreter, CLOUDBOOT_SERVER="true")
            return _timed(interpreter.command(*args), env, home, booted=booted)

        return run

    def floor(interpreter: Interpreter, code: str) -> Runner:
        def run() -> Sample:
            home = fresh_dir(scratch, "home")
            env = cloudboot_env(db, home, interpreter, BENCH_CA_FILE=str(db.certs.ca_file))
            return _timed([interpreter.python, "-c", code], env, home, booted=False)

        return run

    runners: dict[str, Runner] = {SHELL: shell}
    for interpreter in interpreters:
        # Each path next to the floor it is compared with: a difference within a round
        # is then taken over a few hundred ms, not over the whole round.
        paths: dict[str, Runner] = {
            BOOT: cloudboot(interpreter, "--", "true", booted=True),
            FLOOR_LOGIN: floor(interpreter, FLOOR_LOGIN_CODE),
            FLOOR_BOOT: floor(interpreter, FLOOR_BOOT_CODE),
            RENDER: cloudboot(interpreter, "render", "--dry-run"),
            FLOOR_RENDER: floor(interpreter, FLOOR_RENDER_CODE),
            VERSION: cloudboot(interpreter, "--version"),
            HELP: cloudboot(interpreter, "--help"),
        }
        runners.update({_name(p, interpreter, reference): r for p, r in paths.items()})
    return runners


def measure(
    db: Database, scratch: Path, trials: int, interpreters: Sequence[Interpreter]
) -> list[Figure]:
    """Every path ``trials`` times, alternating; the first interpreter is the reference
    (its rows carry the goals)."""
    runners = _runners(db, scratch, interpreters)
    names = list(runners)
    for name in names:  # one untimed round: the page cache holds every file afterwards
        runners[name]()
    samples: dict[str, list[Sample]] = {name: [] for name in names}
    for index in range(trials):
        # Rotated every round and reversed every other one: each path runs first and
        # last, before and after its floor, equally often.
        shift = index % len(names)
        order = names[shift:] + names[:shift]
        for name in reversed(order) if index % 2 else order:
            samples[name].append(runners[name]())

    def row(name: str) -> Figure:
        taken = samples[name]
        return Figure(TITLE, name, "ms", [ms(s.seconds) for s in taken],
                      cpu=[ms(s.cpu_seconds) for s in taken])  # fmt: skip

    reference = interpreters[0]
    shell = row(SHELL)
    figures = [shell]
    memory = []
    for interpreter in interpreters:
        named = {p: _name(p, interpreter, reference) for p in
                 (BOOT, RENDER, VERSION, HELP, FLOOR_BOOT, FLOOR_LOGIN, FLOOR_RENDER)}  # fmt: skip
        rows = {p: row(n) for p, n in named.items()}
        for path in (VERSION, HELP):
            args = ["--version"] if path == VERSION else ["--help"]
            rows[path].notes = _imports_note(interpreter, args, db, scratch)
        suffix = "" if interpreter == reference else f", {interpreter.label}"
        boot_share = _difference(
            rows[BOOT], rows[FLOOR_LOGIN], f"own share: boot - floor+login{suffix}"
        )
        render_share = _difference(
            rows[RENDER], rows[FLOOR_RENDER], f"own share: render - floor{suffix}"
        )
        login_share = _difference(
            rows[FLOOR_LOGIN], rows[FLOOR_BOOT], f"TLS login + select 1{suffix}"
        )
        if interpreter == reference:
            boot_share.goal = f"median <= {GOAL_BOOT_SHARE_MS:g} ms"
            boot_share.met = boot_share.median <= GOAL_BOOT_SHARE_MS
            render_share.goal = f"median <= {GOAL_RENDER_SHARE_MS:g} ms"
            render_share.met = render_share.median <= GOAL_RENDER_SHARE_MS
        figures += [rows[BOOT], rows[RENDER], rows[VERSION], rows[HELP]]
        figures += [_ratio(rows[BOOT], shell), _ratio(rows[RENDER], shell)]
        figures += [rows[FLOOR_BOOT], rows[FLOOR_LOGIN], rows[FLOOR_RENDER]]
        figures += [login_share, boot_share, render_share]
        for path in (BOOT, RENDER):
            memory.append(Figure("peak RSS before exec", named[path], "MB",
                                 [s.rss_mb for s in samples[named[path]]]))  # fmt: skip
    return figures + memory


def _difference(figure: Figure, floor: Figure, label: str) -> Figure:
    """``figure`` minus ``floor``, within each round (wall and CPU). The notes give the
    difference of the two fastest runs too: on a machine whose other work comes in
    bursts, the least disturbed run of each is the steadier estimate."""
    least = min(figure.samples) - min(floor.samples)
    return Figure(
        figure.figure,
        label,
        "ms",
        [a - b for a, b in zip(figure.samples, floor.samples, strict=True)],
        cpu=[a - b for a, b in zip(figure.cpu, floor.cpu, strict=True)],
        note="median and p90 of the differences within each round",
        notes=f"fastest - fastest: {least:.1f} ms",
    )


def _ratio(figure: Figure, shell: Figure) -> Figure:
    ratio = figure.median / shell.median
    cpu = (figure.cpu_median or 0.0) / (shell.cpu_median or 1.0)
    return Figure(
        figure.figure,
        f"ratio {figure.path} / shell path",
        "x",
        [a / b for a, b in zip(figure.samples, shell.samples, strict=True)],
        note="median: the ratio of the medians; p90: of the ratios within each round",
        median_value=ratio,
        notes=f"CPU {cpu:.2f}x",
    )


def _imports_note(interpreter: Interpreter, args: list[str], db: Database, scratch: Path) -> str:
    """Which heavy packages ``cloudboot ARGS`` imports (``-X importtime``, one run)."""
    home = fresh_dir(scratch, "home")
    env = cloudboot_env(db, home, interpreter)
    argv = [interpreter.python, "-X", "importtime", "-m", "bootstrap", *args]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    loaded = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in
              result.stderr.splitlines() if line.startswith("import time:")}  # fmt: skip
    heavy = [name for name in HEAVY if name in loaded]
    return "imports " + ", ".join(heavy) if heavy else "imports none of " + ", ".join(HEAVY)
