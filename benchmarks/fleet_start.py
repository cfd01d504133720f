"""Fleet start: 16 boots at once, one locked once-per-release hook that takes 1 s.

Every boot gets the same fresh ``CLOUDBOOT_RELEASE`` and, as its migration, a hook
whose body sleeps 1 s and then appends the time to a shared file. Per trial:

* the wall time from the first fork to the last exec (each boot execs ``date``);
* how many lines the file holds afterwards: how many times the hook body ran;
* the CPU time (user + system) of each boot, from ``os.wait4``;
* the **coordination overhead**: wall - the hook's 1 s - what the CPU alone explains on
  this machine (16 x CPU per boot / cores). All 16 share this machine's cores, unlike
  the tasks of a fleet, each with its own; what is left is what the lock, the
  once-per-release record and the hand-offs cost;
* the **lock hand-off**: from the end of the hook body (its own timestamp) to the next
  boot past its lock (its ``cloudboot.hook.locked`` event), and to the last one.
"""

from __future__ import annotations

import secrets
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from benchlib import (
    RECORD_EXEC,
    Database,
    Figure,
    Interpreter,
    cloudboot_env,
    cores,
    events,
    fresh_dir,
    launch,
    ms,
    require_event,
)

BOOTS = 16
HOOK_SECONDS = 1
GOAL_OVERHEAD_MS = 300.0


@dataclass(frozen=True)
class FleetTrial:
    wall: float  # seconds, first fork to last exec
    hook_runs: int
    cpu: list[float]  # seconds per boot
    first_handoff: float | None  # hook body done -> next boot past its lock
    last_handoff: float | None  # hook body done -> the last boot past its lock

    def overhead(self, cores: int) -> float:
        return self.wall - HOOK_SECONDS - BOOTS * statistics.mean(self.cpu) / cores


def trial(db: Database, scratch: Path, interpreter: Interpreter) -> FleetTrial:
    root = fresh_dir(scratch, "fleet")
    ran = root / "hook-ran"
    ran.touch()
    release = f"bench-{secrets.token_hex(6)}"
    hook = f"/bin/sh -c 'sleep {HOOK_SECONDS}; date +%s.%N >> {ran}'"
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
    cpu = []
    for run in runs:
        code, usage = run.finish(timeout=120)
        if code != 0:
            raise RuntimeError(f"a fleet boot exited with {code}: {run.tail()}")
        cpu.append(usage.ru_utime + usage.ru_stime)
    for run in runs:
        require_event(run.stderr, "cloudboot.hook.locked", "fleet start")
    last_exec = max(run.exec_time() for run in runs)
    done = [float(line) for line in ran.read_text().split()]
    locked = sorted(
        event.at
        for run in runs
        for event in events(run.stderr)
        if event.name == "cloudboot.hook.locked"
    )
    after = [at - done[0] for at in locked if done and at >= done[0]]
    return FleetTrial(
        last_exec - started,
        len(done),
        cpu,
        min(after) if after else None,
        max(after) if after else None,
    )


def measure(
    db: Database, scratch: Path, trials: int, interpreters: list[Interpreter]
) -> list[Figure]:
    title = f"fleet start: {BOOTS} boots, {HOOK_SECONDS} s locked hook"
    usable = cores()
    figures = []
    reference = interpreters[0]
    for interpreter in interpreters:
        taken = [trial(db, scratch, interpreter) for _ in range(trials)]
        suffix = "" if interpreter == reference else f", {interpreter.label}"
        wall = Figure(
            title, f"wall time until all {BOOTS} exec'd{suffix}", "s", [t.wall for t in taken],
            cpu=[ms(statistics.mean(t.cpu)) for t in taken],
            notes="cpu: mean of one boot",
        )  # fmt: skip
        overhead = Figure(
            title, f"coordination: wall - {HOOK_SECONDS} s - {BOOTS} x CPU / {usable} cores"
            f"{suffix}", "ms", [ms(t.overhead(usable)) for t in taken],
            note="what the CPU of the boots on this machine's cores does not explain",
        )  # fmt: skip
        once = Figure(
            title, f"hook body runs per release{suffix}", "runs",
            [float(t.hook_runs) for t in taken],
        )  # fmt: skip
        if interpreter == reference:
            overhead.goal = f"median <= {GOAL_OVERHEAD_MS:g} ms"
            overhead.met = overhead.median <= GOAL_OVERHEAD_MS
            once.goal, once.met = "1 in every trial", all(t.hook_runs == 1 for t in taken)
        figures += [wall, overhead, once]
        first = [ms(t.first_handoff) for t in taken if t.first_handoff is not None]
        last = [ms(t.last_handoff) for t in taken if t.last_handoff is not None]
        if first:
            figures.append(Figure(
                title, f"lock hand-off: hook done -> next boot past its lock{suffix}", "ms",
                first,
            ))  # fmt: skip
            figures.append(Figure(
                title, f"lock hand-off: hook done -> last of {BOOTS - 1} past it{suffix}",
                "ms", last,
            ))  # fmt: skip
    return figures
