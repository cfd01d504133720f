"""Log event names are an API: the README's table and ``bootstrap.events`` agree, and the
``gave_up`` event carries the fields the table promises, whenever it fires."""

from __future__ import annotations

import re
from pathlib import Path

from bootproc import Target, run
from bootstrap import events
from servers import HOST, free_port

README = Path(__file__).resolve().parent.parent / "README.md"


def _table() -> dict[str, str]:
    """Event name → the README row's fields column, from the "Logs" section."""
    section = README.read_text().split("## Logs", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        if not line.startswith("| `cloudboot."):
            continue
        names_column, _when, fields = line.strip("|").split(" | ")[:3]
        for name in re.findall(r"`(cloudboot\.[a-z_.]+)`", names_column):
            rows[name] = fields
    return rows


def test_the_readme_lists_exactly_the_events_cloudboot_logs() -> None:
    assert set(_table()) == events.all_events()


def _fields(column: str) -> set[str]:
    return set(re.findall(r"`([a-z_]+)`", column))


def test_gave_up_at_the_deadline_has_the_documented_fields(home: Path) -> None:
    env = {
        "DATABASE_URL": f"postgresql://u:gave-up-password@{HOST}:{free_port()}/app",
        "CLOUDBOOT_WAIT_TIMEOUT": "0.5",
        "CLOUDBOOT_LOG_FORMAT": "json",
    }
    result = run(["wait"], env, home=home)
    assert result.returncode == 69, result
    event = result.event(events.WAIT.gave_up)
    documented = _fields(_table()[events.WAIT.gave_up])
    assert set(event) - {"event", "level", "timestamp"} == documented
    assert event["error_class"] == "retryable"


def test_gave_up_on_a_refusal_has_the_documented_fields(target: Target, home: Path) -> None:
    env = target.environ(DB_PASSWORD="not-the-password", CLOUDBOOT_WAIT_TIMEOUT="30")
    result = run(["wait"], env, home=home)
    assert result.returncode == 77, result
    event = result.event(events.WAIT.gave_up)
    assert set(event) - {"event", "level", "timestamp"} == _fields(_table()[events.WAIT.gave_up])
    assert (event["error_class"], event["attempt"]) == ("auth", 3)


def test_retry_events_have_the_documented_fields(home: Path) -> None:
    env = {
        "DATABASE_URL": f"postgresql://u:retry-password@{HOST}:{free_port()}/app",
        "CLOUDBOOT_WAIT_TIMEOUT": "0.3",
        "CLOUDBOOT_LOG_FORMAT": "json",
    }
    result = run(["wait"], env, home=home)
    retry = result.event(events.WAIT.retry)
    assert set(retry) - {"event", "level", "timestamp"} == _fields(_table()[events.WAIT.retry])
