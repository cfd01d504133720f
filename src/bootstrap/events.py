"""Every log event name, in one place: the names are an API (README, "Logs").

The retrying stages share one shape of events, :class:`StageEvents`; the README's
event table is tested against this module.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCES_FOUND = "cloudboot.sources.found"
RENDER_FILE = "cloudboot.render.file"
WAIT_START = "cloudboot.wait.start"
WAIT_READY = "cloudboot.wait.ready"
DATABASE_CREATED = "cloudboot.database.created"
DATABASE_EXISTS = "cloudboot.database.exists"
DATABASE_LOST_RACE = "cloudboot.database.lost_race"
HOOK_LOCK_WAIT = "cloudboot.hook.lock_wait"
HOOK_LOCKED = "cloudboot.hook.locked"
HOOK_LOCK_TIMEOUT = "cloudboot.hook.lock_timeout"
HOOK_LOCK_LOST = "cloudboot.hook.lock_lost"
HOOK_SKIPPED = "cloudboot.hook.skipped"
HOOK_START = "cloudboot.hook.start"
HOOK_DONE = "cloudboot.hook.done"
EXEC = "cloudboot.exec"
EXEC_DIRECT = "cloudboot.exec.direct"
EXEC_UNCONFIGURED = "cloudboot.exec.unconfigured"
CLIENT_EXEC = "cloudboot.client.exec"
FAILED = "cloudboot.failed"


@dataclass(frozen=True)
class StageEvents:
    """The events of one stage that connects through the retry engine."""

    attempt: str
    retry: str
    gave_up: str
    port_open: str
    accepting: str


def _stage(name: str) -> StageEvents:
    return StageEvents(
        attempt=f"cloudboot.{name}.attempt",
        retry=f"cloudboot.{name}.retry",
        gave_up=f"cloudboot.{name}.gave_up",
        port_open=f"cloudboot.{name}.port_open",
        accepting=f"cloudboot.{name}.accepting",
    )


WAIT = _stage("wait")
DATABASE = _stage("database")
HOOK = _stage("hook")
STAGES = (WAIT, DATABASE, HOOK)


def all_events() -> frozenset[str]:
    """Every event name cloudboot logs."""
    names = {value for key, value in globals().items() if key.isupper() and isinstance(value, str)}
    for stage in STAGES:
        names |= {stage.attempt, stage.retry, stage.gave_up, stage.port_open, stage.accepting}
    return frozenset(names)
