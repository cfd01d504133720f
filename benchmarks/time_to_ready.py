"""Time-to-ready: how long after the database first accepts a verified-TLS login each
waiter runs the next command, and how often it ran it too early (false-ready).

One trial: the server is down, its data folder as a crash left it (so that its start
replays WAL while it already listens and answers "starting up", as a real restart
does). The waiters start; once each has printed that it waits (its ``marker``) and
after a random delay, ``pg_ctl -W start`` starts the server without waiting.

* **Ready** is seen by an independent prober, a thread here making a real TLS login
  (psycopg, ``verify-full``, ``select 1``) every :data:`PROBE_INTERVAL`: the ready
  moment is when its first successful login is done (the answer to ``select 1``), the
  moment a TLS login first succeeds. The server's own log line ("ready to accept
  connections", ms) and the start of that login are kept next to it.
* **Exec** is recorded by the next command itself (``shell/next-command.sh``): ``date``
  first, then ONE verified-TLS login at once. A failed login means the waiter let the
  server command start before the database could take it: false-ready.

The peers wait together for one start per trial (their loops are 0.25-5 s); cloudboot,
whose figure is a few milliseconds, also has trials of its own, with only the prober
beside it. Each trial's delay is drawn stratified over a multiple of every waiter's
period in the trial (5 s for the peers, :data:`SOLO_SPAN` for cloudboot alone), so no
waiter is lucky or unlucky with the phase of its loop.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import peers
from benchlib import (
    SHELL_DIR,
    Database,
    Event,
    Figure,
    Interpreter,
    Run,
    ServerStart,
    events,
    fresh_dir,
    launch,
    ms,
    require_event,
)

PROBE_INTERVAL = 0.005
SOLO_SPAN = 0.5
"""Seconds over which the start is spread in cloudboot's own trials (its TCP probes
watch the port all the time; the span only varies the backoff step it is in)."""
GOAL_MEDIAN_MS = 15.0
GOAL_P90_MS = 40.0
TITLE = "time-to-ready: TLS login first succeeds -> exec"
PHASES = "cloudboot: server ready -> exec"


class Prober(threading.Thread):
    """Logs in every :data:`PROBE_INTERVAL` until one login succeeds."""

    def __init__(self, db: Database) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.ready_at: float | None = None  # time.time() when the first good login was done
        self.login_started: float | None = None  # when that login began
        self.attempts = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            started = time.time()
            self.attempts += 1
            try:
                done = self.db.login()
            except Exception:  # noqa: BLE001 - any failure means "not ready yet"
                self._done.wait(max(0.0, started + PROBE_INTERVAL - time.time()))
                continue
            self.login_started, self.ready_at = started, done
            return

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)


@dataclass(frozen=True)
class Outcome:
    """What one waiter did in one trial."""

    exec_at: float
    login_ok: bool
    login_error: str
    log: list[Event]  # cloudboot's JSON log; empty for the others


@dataclass(frozen=True)
class Trial:
    ready_at: float  # the prober's first good login was done: the figures' zero
    login_started: float  # when that login began
    start: ServerStart
    outcomes: dict[str, Outcome]


def _wait_for_markers(runs: dict[str, Run], waiters: list[peers.Waiter]) -> None:
    deadline = time.monotonic() + 30
    pending = {w.name: w.marker for w in waiters}
    while pending:
        for name, marker in list(pending.items()):
            run = runs[name]
            if marker in run.output():
                del pending[name]
            elif run.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} never started waiting: {run.tail()}")
        time.sleep(0.005)


def _outcome(waiter: peers.Waiter, run: Run, result: Path) -> Outcome:
    code, _usage = run.finish(timeout=60)
    if code != 0 or not result.exists():
        raise RuntimeError(f"{waiter.name} exited with {code} before its next command: "
                           f"{run.tail()}")  # fmt: skip
    stamp, status = result.read_text().split()
    error_file = result.with_name(result.name + ".login-error")
    error = error_file.read_text(errors="replace").strip() if error_file.exists() else ""
    log: list[Event] = []
    if waiter.is_cloudboot:
        require_event(run.stderr, "cloudboot.wait.ready", waiter.name)
        log = events(run.stderr)
    return Outcome(float(stamp), status == "ok", error.splitlines()[0] if error else "", log)


def trial(waiters: list[peers.Waiter], db: Database, scratch: Path, delay: float) -> Trial:
    """One cold start awaited by ``waiters``, ``delay`` s after all of them wait.

    The waiter with the longest period starts last, once the others wait: the delay
    then counts from its first check, and a trial seldom lasts two of its periods.
    """
    db.crash()
    runs: dict[str, Run] = {}
    results: dict[str, Path] = {}
    prober = Prober(db)
    slowest: peers.Waiter | None = max(waiters, key=lambda w: w.period)
    first = [w for w in waiters if w is not slowest]
    if not first:
        first, slowest = waiters, None

    def begin(waiter: peers.Waiter) -> None:
        workdir = fresh_dir(scratch, f"waiter{waiters.index(waiter)}")
        home = fresh_dir(workdir, "home")
        results[waiter.name] = workdir / "next-command"
        next_command = [
            "/bin/sh", str(SHELL_DIR / "next-command.sh"), str(results[waiter.name]),
            db.conninfo(),
        ]  # fmt: skip
        runs[waiter.name] = launch(
            waiter.command(db, next_command), waiter.environ(db, home), workdir
        )

    try:
        for waiter in first:
            begin(waiter)
        db.restore_snapshot()  # while the waiters start up: nothing of it is timed
        _wait_for_markers(runs, first)
        if slowest is not None:
            begin(slowest)
            _wait_for_markers(runs, [slowest])
        prober.start()
        time.sleep(delay)
        launched = db.cold_start()
        outcomes = {w.name: _outcome(w, runs[w.name], results[w.name]) for w in waiters}
        deadline = time.monotonic() + 30
        while prober.ready_at is None and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        prober.stop()
        for run in runs.values():
            run.kill()
    if prober.ready_at is None or prober.login_started is None:
        raise RuntimeError("the prober never logged in")
    start = db.start_report(launched)
    return Trial(prober.ready_at, prober.login_started, start, outcomes)


@dataclass
class Group:
    """Waiters that share their trials, and the span their start delays cover."""

    waiters: list[peers.Waiter]
    span: float
    trials: list[Trial] = field(default_factory=list)


def measure(
    db: Database,
    scratch: Path,
    trials: int,
    rng: random.Random,
    interpreter: Interpreter,
    *,
    variants: dict[str, Interpreter] | None = None,
    with_peers: bool = True,
) -> list[Figure]:
    """Every waiter, ``trials`` times each; the groups' trials interleaved. Without
    ``with_peers`` only cloudboot's own trials (and its variants') run."""
    solo = [Group([peers.cloudboot(interpreter)], SOLO_SPAN)]
    for name, variant in (variants or {}).items():
        solo.append(Group([peers.cloudboot(variant, f"cloudboot [{name}]")], SOLO_SPAN))
    together = [peers.cloudboot(interpreter, "cloudboot, among the peers"), *peers.peers()]
    shared = [Group(together, max(w.period for w in together))] if with_peers else []
    groups = shared + solo
    delays = [_stratified(group.span, trials, rng) for group in groups]
    for index in range(trials):
        for group, spread in zip(groups, delays, strict=True):
            group.trials.append(trial(group.waiters, db, scratch, spread[index]))
    figures: list[Figure] = []
    for group in groups:
        figures += [_figure(waiter, group.trials) for waiter in group.waiters]
    figures += _reference_rows([t for group in groups for t in group.trials])
    for group in solo:
        figures += _phases(group.waiters[0].name, group.trials)
    return figures


def _figure(waiter: peers.Waiter, trials: list[Trial]) -> Figure:
    outcomes = [t.outcomes[waiter.name] for t in trials]
    samples = [ms(o.exec_at - t.ready_at) for o, t in zip(outcomes, trials, strict=True)]
    false_ready = sum(not o.login_ok for o in outcomes)
    early = sum(
        o.exec_at < t.start.ready
        for o, t in zip(outcomes, trials, strict=True)
        if t.start.ready is not None
    )
    errors = Counter(o.login_error for o in outcomes if not o.login_ok)
    figure = Figure(TITLE, waiter.name, "ms", samples)
    figure.notes = f"false-ready {false_ready}/{len(outcomes)}"
    if early != false_ready:
        figure.notes += f" (ran before the server's ready line: {early})"
    figure.details = {
        "checks": waiter.checks,
        "false_ready": false_ready,
        "exec_before_server_ready": early,
        "login_errors_of_false_ready": dict(errors),
    }
    if waiter.is_cloudboot:
        attempts = [_attempts(o.log, t.start) for o, t in zip(outcomes, trials, strict=True)]
        total = [a for a, _open in attempts]
        against_open = [b for _all, b in attempts]
        figure.notes += (
            f"; attempts/wait {statistics.median(total):g} (max {max(total)}), "
            f"{statistics.median(against_open):g} on the open port (max {max(against_open)})"
            if any(total)
            else "; attempts: its log has no cloudboot.wait.attempt events (debug level)"
        )
        figure.details["attempts_per_wait"] = total
        figure.details["attempts_on_open_port"] = against_open
        figure.details["retry_reasons"] = dict(
            Counter(
                str(e.fields.get("reason"))
                for o in outcomes
                for e in o.log
                if e.name == "cloudboot.wait.retry"
            )
        )
    if waiter.name == "cloudboot":
        figure.goal = f"median <= {GOAL_MEDIAN_MS:g}, p90 <= {GOAL_P90_MS:g}, 0 false-ready"
        p90 = figure.p90 or 0.0
        figure.met = figure.median <= GOAL_MEDIAN_MS and p90 <= GOAL_P90_MS and not false_ready
    return figure


def _attempts(log: list[Event], start: ServerStart) -> tuple[int, int]:
    """Full attempts (``cloudboot.wait.attempt``) of one wait, and how many of them
    were made once the port was open (against the server still starting up)."""
    attempts = [e for e in log if e.name == "cloudboot.wait.attempt"]
    opened = start.listening if start.listening is not None else start.launched
    return len(attempts), sum(e.at >= opened for e in attempts)


def _reference_rows(trials: list[Trial]) -> list[Figure]:
    """How the server came up, and when the prober's first login began and was done."""
    title = "the cold start (all trials)"
    windows = [ms(t.start.window) for t in trials if t.start.window is not None]
    began = [ms(t.login_started - t.start.ready) for t in trials if t.start.ready is not None]
    login = [ms(t.ready_at - t.login_started) for t in trials]
    rows = [
        Figure(
            title, 'server: port open -> ready ("starting up")', "ms", windows,
            note="from the server's log: 'listening on' to 'ready to accept connections'; "
            "a TCP-only waiter that checks inside this window is false-ready",
        ),
        Figure(
            title, "prober: server's ready line -> its first good login begins", "ms", began,
            note="how soon the prober's attempts find the server ready",
        ),
        Figure(
            title, "prober: that first login (TLS, SCRAM, select 1)", "ms", login,
            note="its end is the zero of every time-to-ready figure; it shares the cores "
            "with a waiter's login and the server that has just come up",
        ),
    ]  # fmt: skip
    return [row for row in rows if row.samples]


def _phases(name: str, trials: list[Trial]) -> list[Figure]:
    """Where cloudboot's time goes, from the server's ready line to the next command,
    from its own JSON log (debug level)."""
    rows: dict[str, list[float]] = {}
    for t in trials:
        outcome = t.outcomes[name]
        for phase, seconds in _split(outcome, t).items():
            rows.setdefault(phase, []).append(ms(seconds))
    title = f"{PHASES} ({name})"
    return [Figure(title, phase, "ms", samples) for phase, samples in rows.items()]


def _split(outcome: Outcome, t: Trial) -> dict[str, float]:
    """One trial's phases. The four after the port's add up to the server's ready line
    -> exec; the figure is that minus the reference row (ready line -> prober done)."""
    log = outcome.log

    def first(event: str) -> Event | None:
        return next((e for e in log if e.name == event), None)

    ready, execd = first("cloudboot.wait.ready"), first("cloudboot.exec")
    if ready is None or execd is None or t.start.ready is None:
        return {}
    attempts = [e for e in log if e.name == "cloudboot.wait.attempt" and e.at <= ready.at]
    phases: dict[str, float] = {}
    port_open = first("cloudboot.wait.port_open")
    if port_open is not None and t.start.listening is not None:
        phases["port opens -> cloudboot's TCP probe sees it"] = port_open.at - t.start.listening
    if attempts:
        last = attempts[-1]
        phases["server ready -> its successful attempt starts"] = last.at - t.start.ready
        phases["that attempt: TLS login + select 1"] = ready.at - last.at
    phases["wait.ready -> cloudboot.exec (after the wait)"] = execd.at - ready.at
    phases["cloudboot.exec -> next command runs (execve, sh, date)"] = outcome.exec_at - execd.at
    phases["reference: server ready -> prober's login done"] = t.ready_at - t.start.ready
    return phases


def _stratified(span: float, trials: int, rng: random.Random) -> list[float]:
    delays = [span * (i + rng.random()) / trials for i in range(trials)]
    rng.shuffle(delays)
    return delays
