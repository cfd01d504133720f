"""Boot overhead with the database already up, and cloudboot's peak memory.

The paths alternate in one run (their order rotates every round), each in a fresh,
empty ``HOME`` so that every artifact is created, as in a container's first boot:

* the tutorials' shell path (``shell/tutorial-boot.sh``): five ``jq`` calls, three
  ``echo``-written files, ``sed`` on a fresh copy of ``wp-config.php``, exec ``true``;
* cloudboot's boot, ``cloudboot -- true``, for the Phoenix case: ``DB_SECRET``, the
  image's TOML file, the ecto URL, ``.pgpass``, ``.pg_service.conf``,
  ``application.profile``, the readiness probe (a TLS login and ``select 1``), exec;
* ``cloudboot render --dry-run`` with the same settings;
* where Debian's ``/usr/bin/python3.11`` exists, both cloudboot paths again with that
  interpreter (the one the images use) running the same code and packages.

Each figure is the wall time from the spawn to the exit of ``true`` (or of cloudboot),
taken by ``spawn.py``. Peak RSS is ``ru_maxrss`` of the boot's process: Linux keeps the
largest resident set across an exec, and ``true`` is far smaller than cloudboot.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Sequence
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
    shell_env,
)

SPAWN = Path(__file__).resolve().parent / "spawn.py"

GOAL_BOOT_MS = 250.0
GOAL_BOOT_RATIO = 2.5
GOAL_RENDER_RATIO = 1.5

SHELL = "tutorials' shell path (5 jq, 3 echo files, sed, exec true)"
BOOT = "cloudboot boot"
RENDER = "cloudboot render --dry-run"
FLOOR_BOOT = "floor: python importing the boot's dependencies, exec true"
FLOOR_RENDER = "floor: python importing render's dependencies"
PLAIN_BOOT = "what-if floor: the boot's, pydantic without pydantic-settings"
PLAIN_RENDER = "what-if floor: render's, pydantic without pydantic-settings"

# What cloudboot cannot go below: the interpreter's start and the imports of the
# runtime dependencies SPEC mandates (render: pydantic-settings, structlog; the boot:
# also psycopg and tenacity), with the same exit (gc.freeze) or exec as cloudboot's.
FLOOR_RENDER_CODE = "import gc, pydantic_settings, structlog; gc.freeze()"
FLOOR_BOOT_CODE = (
    "import os, pydantic_settings, structlog, tenacity, psycopg; os.execvp('true', ['true'])"
)
# Not a floor of today's cloudboot: the same with plain pydantic in place of
# pydantic-settings, which is what dropping it from the hot path (a change of SPEC's
# dependency list) would leave.
PLAIN_RENDER_CODE = "import gc, structlog; from pydantic import BaseModel; gc.freeze()"
PLAIN_BOOT_CODE = (
    "import os, structlog, tenacity, psycopg; from pydantic import BaseModel; "
    "os.execvp('true', ['true'])"
)

Sample = tuple[float, float]  # seconds, peak RSS in MB
Runner = Callable[[], Sample]


def _timed(argv: Sequence[str], env: dict[str, str], workdir: Path) -> Sample:
    result = workdir / "spawn.json"
    run = launch([sys.executable, str(SPAWN), str(result), *argv], env, workdir)
    code, _usage = run.finish(timeout=60)
    report = json.loads(result.read_text()) if code == 0 else {}
    if report.get("exit_code") != 0:
        raise RuntimeError(f"{argv[0]} failed ({report or code}): {run.tail()}")
    return float(report["seconds"]), report["maxrss_kb"] / 1024.0


def _name(path: str, interpreter: Interpreter) -> str:
    return f"{path}, {interpreter.label}" if interpreter.label else path


def _runners(db: Database, scratch: Path, interpreters: Sequence[Interpreter]) -> dict[str, Runner]:
    def shell() -> Sample:
        home = fresh_dir(scratch, "home")
        wp_config = home / "wp-config.php"
        shutil.copyfile(WP_SAMPLE, wp_config)
        env = shell_env(db, home, WP_CONFIG_PATH=str(wp_config))
        return _timed(["/bin/sh", str(SHELL_DIR / "tutorial-boot.sh"), "true"], env, home)

    def cloudboot(interpreter: Interpreter, *args: str) -> Runner:
        def run() -> Sample:
            home = fresh_dir(scratch, "home")
            env = cloudboot_env(db, home, interpreter)
            return _timed(interpreter.command(*args), env, home)

        return run

    def floor(interpreter: Interpreter, code: str) -> Runner:
        def run() -> Sample:
            home = fresh_dir(scratch, "home")
            env = cloudboot_env(db, home, interpreter)
            return _timed([interpreter.python, "-c", code], env, home)

        return run

    runners: dict[str, Runner] = {SHELL: shell}
    for interpreter in interpreters:
        runners[_name(BOOT, interpreter)] = cloudboot(interpreter, "--", "true")
        runners[_name(RENDER, interpreter)] = cloudboot(interpreter, "render", "--dry-run")
        runners[_name(FLOOR_BOOT, interpreter)] = floor(interpreter, FLOOR_BOOT_CODE)
        runners[_name(FLOOR_RENDER, interpreter)] = floor(interpreter, FLOOR_RENDER_CODE)
        runners[_name(PLAIN_BOOT, interpreter)] = floor(interpreter, PLAIN_BOOT_CODE)
        runners[_name(PLAIN_RENDER, interpreter)] = floor(interpreter, PLAIN_RENDER_CODE)
    return runners


def measure(
    db: Database, scratch: Path, trials: int, interpreters: Sequence[Interpreter]
) -> list[Figure]:
    runners = _runners(db, scratch, interpreters)
    names = list(runners)
    for name in names:  # one untimed round: the page cache holds every file afterwards
        runners[name]()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    rss: dict[str, list[float]] = {name: [] for name in names}
    for index in range(trials):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            elapsed, peak = runners[name]()
            seconds[name].append(ms(elapsed))
            rss[name].append(peak)
    title = "boot overhead, database up"
    shell = Figure(title, SHELL, "ms", seconds[SHELL])
    figures = [shell]
    memory = []
    for interpreter in interpreters:
        boot_name, render_name = _name(BOOT, interpreter), _name(RENDER, interpreter)
        boot = Figure(title, boot_name, "ms", seconds[boot_name])
        boot.goal, boot.met = f"median <= {GOAL_BOOT_MS:g} ms", boot.median <= GOAL_BOOT_MS
        render = Figure(title, render_name, "ms", seconds[render_name])
        floor_boot, floor_render = (
            Figure(title, _name(name, interpreter), "ms", seconds[_name(name, interpreter)])
            for name in (FLOOR_BOOT, FLOOR_RENDER)
        )
        figures += [boot, render]
        for figure, goal in ((boot, GOAL_BOOT_RATIO), (render, GOAL_RENDER_RATIO)):
            figures.append(_ratio(figure, shell, goal))
        figures += [floor_boot, floor_render]
        figures += [_share(boot, floor_boot), _share(render, floor_render)]
        figures += [
            Figure(title, _name(name, interpreter), "ms", seconds[_name(name, interpreter)])
            for name in (PLAIN_BOOT, PLAIN_RENDER)
        ]
        memory.append(Figure("peak RSS before exec", boot_name, "MB", rss[boot_name]))
        memory.append(Figure("peak RSS before exec", render_name, "MB", rss[render_name]))
    return figures + memory


def _share(figure: Figure, floor: Figure) -> Figure:
    """What cloudboot adds above its floor: the difference within each round."""
    return Figure(
        figure.figure,
        f"own share: {figure.path} - its floor",
        "ms",
        [a - b for a, b in zip(figure.samples, floor.samples, strict=True)],
        note="the part cloudboot's own code controls; median and p90 of the differences "
        "within each round",
    )


def _ratio(figure: Figure, shell: Figure, goal: float) -> Figure:
    ratio = figure.median / shell.median
    return Figure(
        figure.figure,
        f"ratio {figure.path} / shell path",
        "x",
        [a / b for a, b in zip(figure.samples, shell.samples, strict=True)],
        goal=f"<= {goal:g}x",
        met=ratio <= goal,
        note="median: the ratio of the medians; p90: of the ratios within each round",
        median_value=ratio,
    )
