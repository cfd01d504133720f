"""Fleet start: 16 boots at once, one locked once-per-release hook that takes 1 s.

Every boot gets the same fresh ``CLOUDBOOT_RELEASE`` and, as its migration, a hook
whose body sleeps 1 s and appends a line to a shared file. The figure is the wall time
from the first fork to the last exec (each boot execs ``date``), how many lines the file
holds afterwards (how many times the hook body ran), and the CPU time one boot used.
All 16 share this machine's cores, unlike the tasks of a real fleet: until the first
boot holds the lock, they split the cores evenly, so the wall time is about
16 x (one boot's CPU time) / cores + the hook's 1 s.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from benchlib import (
    RECORD_EXEC,
    VENV,
    Database,
    Figure,
    Interpreter,
    cloudboot_env,
    fresh_dir,
    launch,
    ms,
)

BOOTS = 16
HOOK_SECONDS = 1
GOAL_SECONDS = 3.0


def trial(db: Database, scratch: Path, interpreter: Interpreter = VENV) -> tuple[float, int, float]:
    """One fleet start: seconds until all have exec'd, the hook body's runs, and the mean
    CPU time (user + system) of one boot in seconds."""
    root = fresh_dir(scratch, "fleet")
    ran = root / "hook-ran"
    ran.touch()
    release = f"bench-{secrets.token_hex(6)}"
    hook = f"/bin/sh -c 'sleep {HOOK_SECONDS}; echo ran >> {ran}'"
    envs = []
    for index in range(BOOTS):
        home = fresh_dir(root, f"home{index}")
        env = cloudboot_env(
            db, home, interpreter, CLOUDBOOT_RELEASE=release, CLOUDBOOT_MIGRATE_COMMAND=hook
        )
        envs.append((home, env))
    started = time.time()
    argv = interpreter.command("--", *RECORD_EXEC)
    runs = [launch(argv, env, home) for home, env in envs]
    cpu = 0.0
    for run in runs:
        code, usage = run.finish(timeout=120)
        if code != 0:
            raise RuntimeError(f"a fleet boot exited with {code}: {run.tail()}")
        cpu += usage.ru_utime + usage.ru_stime
    last_exec = max(run.exec_time() for run in runs)
    return last_exec - started, len(ran.read_text().splitlines()), cpu / BOOTS


def measure(
    db: Database, scratch: Path, trials: int, interpreters: list[Interpreter]
) -> list[Figure]:
    title = f"fleet start: {BOOTS} boots, {HOOK_SECONDS} s locked hook"
    figures = []
    for interpreter in interpreters:
        seconds: list[float] = []
        runs: list[float] = []
        cpu: list[float] = []
        for _ in range(trials):
            elapsed, count, per_boot = trial(db, scratch, interpreter)
            seconds.append(elapsed)
            runs.append(float(count))
            cpu.append(ms(per_boot))
        suffix = f", {interpreter.label}" if interpreter.label else ""
        wall = Figure(
            title, f"wall time until all {BOOTS} exec'd{suffix}", "s", seconds,
            goal=f"median <= {GOAL_SECONDS:g} s",
        )  # fmt: skip
        wall.met = wall.median <= GOAL_SECONDS
        once = Figure(
            title, f"hook body runs per release{suffix}", "runs", runs,
            goal="1 in every trial", met=all(count == 1 for count in runs),
        )  # fmt: skip
        load = Figure(
            title, f"CPU time of one boot (user + system, mean of {BOOTS}){suffix}", "ms", cpu,
            note=f"the wall time is about {BOOTS} x this / the cores + {HOOK_SECONDS} s",
        )  # fmt: skip
        figures += [wall, once, load]
    return figures
