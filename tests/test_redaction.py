"""Honest redaction: no secret ever shows, and no output becomes unreadable because of
one. Keys, event names and the facts cloudboot reports (host, engine, database,
booleans) are never rewritten; a short or common password is masked where it stands
as a value or a whole token, not as every substring.

The short passwords are real logins on the suite's servers (the leak guard does not
know passwords shorter than 4 characters: what these tests assert instead is exactly
where the password may and may not stand).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bootproc import Target, call, make_target, run
from bootstrap.redaction import REDACTED, redact, redact_rendered, redact_text
from bootstrap.secret import Secret
from servers import MariaDBServer, PostgresServer

WEAK_PASSWORDS = ["o", "postgres", "yes", "127.0.0.1"]


def test_a_weak_secret_is_masked_only_as_a_whole_value_or_token() -> None:
    Secret("o")
    Secret("yes")
    Secret("127.0.0.1")
    assert redact_text("o") == REDACTED
    assert redact_text("connection refused to o") == f"connection refused to {REDACTED}"
    assert redact_text("password was 'yes'") == f"password was '{REDACTED}'"
    assert redact_text("yesterday, eyes") == "yesterday, eyes"
    assert redact_text("at 127.0.0.1:5432") == f"at {REDACTED}:5432"
    assert redact_text("at 127.0.0.10 and 10.127.0.0.1") == "at 127.0.0.10 and 10.127.0.0.1"


def test_a_strong_secret_is_masked_everywhere_in_every_json_form() -> None:
    strong = 'str0ng "pässwörd"'
    Secret(strong)
    assert redact_text(f"x{strong}y") == f"x{REDACTED}y"
    rendered = json.dumps({"detail": f"said {strong}"})
    assert strong not in redact_rendered(rendered)
    assert json.dumps(strong)[1:-1] not in redact_rendered(rendered)


def test_keys_event_names_and_facts_are_never_rewritten() -> None:
    for password in ("event", "host", "postgres", "true", "app"):
        Secret(password)
    event = {
        "event": "cloudboot.sources.found",
        "host": "postgres",
        "engine": "postgres",
        "dbname": "app",
        "database_exists": True,
        "detail": "FATAL: the server said postgres",
    }
    assert redact(event) == {**event, "detail": f"FATAL: the server said {REDACTED}"}


def _login(server: PostgresServer | MariaDBServer, engine: str, password: str) -> Target:
    return make_target(engine, server, password, create_database=True)


def _json_lines(stderr: str) -> list[dict[str, Any]]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]  # every line is JSON: nothing mangled
    assert all(isinstance(event, dict) for event in events)
    return events


@pytest.mark.parametrize("password", WEAK_PASSWORDS)
@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_weak_passwords_leave_logs_and_reports_whole(
    engine: str,
    password: str,
    pg_server: PostgresServer,
    mariadb_server: MariaDBServer,
    home: Path,
) -> None:
    server = pg_server if engine == "postgres" else mariadb_server
    login = _login(server, engine, password)
    env = login.environ(DB_HOST="127.0.0.1")

    # A real boot up to the hooks, logging at debug level.
    result = run(["migrate"], env, home=home)
    assert result.returncode == 0, result
    events = _json_lines(result.stderr)
    names = [event["event"] for event in events]
    assert "cloudboot.wait.ready" in names
    assert all(name.startswith("cloudboot.") for name in names)
    assert all(REDACTED not in key for event in events for key in event)
    found = next(e for e in events if e["event"] == "cloudboot.sources.found")
    assert (found["engine"], found["host"], found["port"]) == (engine, "127.0.0.1", login.port)
    assert found["dbname"] == login.dbname
    for event in events:
        for key, value in event.items():
            if key not in ("host", "engine") and isinstance(value, str):
                assert value != password, (key, event)

    # The operator's report: every fact as it is.
    report = json.loads(call(["check", "--json"], {**env, "HOME": str(home)}).stdout)
    assert report["ok"] is True, report
    sources = report["steps"][0]["detail"]
    assert (sources["engine"], sources["host"]) == (engine, "127.0.0.1")
    tls = next(step for step in report["steps"] if step["name"] == "tls")["detail"]
    assert tls["trusted"] is True
    assert tls["host_name_matches"] is True


def test_a_wrong_weak_password_is_masked_in_the_failure(
    pg_server: PostgresServer, home: Path
) -> None:
    login = _login(pg_server, "postgres", "yes")
    env = login.environ(DB_HOST="127.0.0.1", DB_PASSWORD="o", CLOUDBOOT_WAIT_TIMEOUT="10")
    result = run(["wait"], env, home=home)
    assert result.returncode == 77, result
    events = _json_lines(result.stderr)
    failed = next(e for e in events if e["event"] == "cloudboot.failed")
    assert failed["exit_code"] == 77
    assert "refused the login" in failed["error"]  # "o" inside words untouched
