"""Time-to-ready: how long after the database first accepts a TLS login each boot path
execs the server.

One trial: the server is stopped; the boot path starts and waits; once it is in its
waiting loop (cloudboot's first ``cloudboot.wait.retry`` event, the shell loop's first
"waiting") and after a further delay that spreads the server's start over one period of
the path's loop, ``pg_ctl -W start`` starts the server without waiting. An independent
poller thread makes a real TLS login (psycopg, ``verify-full``, ``select 1``) every
10 ms; the ready moment is the start of its first successful login. The figure is the
exec moment (the exec'd ``date``) minus the ready moment.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from benchlib import (
    CLOUDBOOT,
    RECORD_EXEC,
    SHELL_DIR,
    Database,
    Figure,
    Run,
    base_env,
    cloudboot_env,
    fresh_dir,
    launch,
    ms,
)

POLL_INTERVAL = 0.010
GOAL_MS = 100.0


class Poller(threading.Thread):
    """Logs in every :data:`POLL_INTERVAL` until one login succeeds."""

    def __init__(self, db: Database) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.ready_at: float | None = None  # time.time() when the first good login began
        self.attempts = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            started = time.time()
            self.attempts += 1
            try:
                self.db.login()
            except Exception:  # noqa: BLE001 - any failure means "not ready yet"
                self._done.wait(max(0.0, started + POLL_INTERVAL - time.time()))
                continue
            self.ready_at = started
            return

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)


@dataclass(frozen=True)
class BootPath:
    """A boot path under test: its argv, its environment and its loop's period."""

    name: str
    period: float
    marker: str  # in its stderr once it waits


def _paths() -> list[BootPath]:
    return [
        BootPath("cloudboot", 1.0, "cloudboot.wait.retry"),
        BootPath("1 s poll loop (wait4x, dockerize, wait-for-it)", 1.0, "waiting"),
        BootPath("5 s sleep loop (Bitnami retry_while)", 5.0, "waiting"),
    ]


def _launch(path: BootPath, db: Database, home: Path, workdir: Path) -> Run:
    if path.name == "cloudboot":
        env = cloudboot_env(db, home)
        return launch([str(CLOUDBOOT), "--", *RECORD_EXEC], env, workdir)
    env = base_env(
        home,
        CONNINFO=db.conninfo(),
        PGPASSWORD=db.password,
        INTERVAL=f"{path.period:g}",
    )
    return launch(["/bin/sh", str(SHELL_DIR / "poll-loop.sh"), *RECORD_EXEC], env, workdir)


def _wait_for_marker(run: Run, marker: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while marker not in run.stderr.read_text(errors="replace"):
        if run.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{run.process.args!r} never started waiting: {run.tail()}")
        time.sleep(0.005)


def trial(path: BootPath, db: Database, scratch: Path, delay: float) -> float:
    """One trial; the ready-to-exec time in seconds."""
    db.server.stop()
    home = fresh_dir(scratch, "home")
    run = _launch(path, db, home, fresh_dir(scratch, "run"))
    poller = Poller(db)
    try:
        _wait_for_marker(run, path.marker)
        poller.start()
        time.sleep(delay)
        db.server.start(wait=False)
        code, _usage = run.finish(timeout=60)
        if code != 0:
            raise RuntimeError(f"{path.name} exited with {code}: {run.tail()}")
        deadline = time.monotonic() + 30
        while poller.ready_at is None and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        poller.stop()
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()
    if poller.ready_at is None:
        raise RuntimeError("the poller never logged in")
    return run.exec_time() - poller.ready_at


def measure(db: Database, scratch: Path, trials: int, rng: random.Random) -> list[Figure]:
    """Every path, ``trials`` times each, in interleaved order."""
    paths = _paths()
    samples: dict[str, list[float]] = {p.name: [] for p in paths}
    # The server's start is spread evenly over one period of each loop (stratified, in
    # random order), so no path is lucky or unlucky with the phase of its loop.
    delays = {p.name: _stratified(p.period, trials, rng) for p in paths}
    for index in range(trials):
        for path in paths:
            samples[path.name].append(ms(trial(path, db, scratch, delays[path.name][index])))
    db.server.wait_until_ready()  # the last trial started it: up for what follows
    figures = []
    for path in paths:
        figure = Figure("time-to-ready: ready -> exec", path.name, "ms", samples[path.name])
        if path.name == "cloudboot":
            figure.goal = f"median <= {GOAL_MS:g} ms"
            figure.met = figure.median <= GOAL_MS
        figures.append(figure)
    return figures


def _stratified(period: float, trials: int, rng: random.Random) -> list[float]:
    delays = [period * (i + rng.random()) / trials for i in range(trials)]
    rng.shuffle(delays)
    return delays
