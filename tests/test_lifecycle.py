"""The boot end to end, dumb-init style: cloudboot runs the real server command with exec,
so the command keeps cloudboot's PID, gets the rendered environment, and its exit code
is the container's; nothing runs after a failed step; ``render``/``env`` load no
database driver."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from bootproc import Target, finish, make_target, run, start
from readers import clean_env, reader
from servers import HOST, MariaDBServer, PostgresServer, mysql_literal


@pytest.fixture
def pg_target(pg_server: PostgresServer, secret_password: str) -> Target:
    return make_target("postgres", pg_server, secret_password)


def test_the_server_keeps_cloudboots_pid_and_sees_database_url(
    target: Target, home: Path, tmp_path: Path
) -> None:
    seen = tmp_path / "seen"
    # The child writes what it got to a file: the URL holds the password, and test
    # output must not.
    child = f'echo "pid $$"; printf %s "$DATABASE_URL" > {seen}'
    process = start(["sh", "-c", child], target.environ(), home=home)
    result = finish(process)
    assert result.returncode == 0, result
    assert result.stdout == f"pid {process.pid}\n"
    url = urlsplit(seen.read_text())
    assert url.scheme == ("postgresql" if target.engine == "postgres" else "mysql")
    assert (url.hostname, url.port, url.path) == (HOST, target.server.port, f"/{target.dbname}")
    assert unquote(url.username or "") == target.user
    assert unquote(url.password or "") == target.password
    assert result.names()[-1] == "cloudboot.exec"
    assert result.event("cloudboot.exec")["pid"] == process.pid
    assert target.database_exists()


EXIT_SAMPLE = (0, 1, 2, 42, 69, 126, 127, 128, 143, 255)


def test_exit_codes_pass_through_unchanged(pg_target: Target, home: Path) -> None:
    env = pg_target.environ()
    run(["true"], env, home=home)  # the database exists from now on: a plain boot each
    processes = {code: start(["sh", "-c", f"exit {code}"], env, home=home) for code in EXIT_SAMPLE}
    codes = {code: finish(process).returncode for code, process in processes.items()}
    assert codes == {code: code for code in EXIT_SAMPLE}


def test_death_of_the_server_by_a_signal_is_the_containers(pg_target: Target, home: Path) -> None:
    result = run(["sh", "-c", "kill -TERM $$"], pg_target.environ(), home=home)
    assert result.returncode == -15, result  # the PID itself died of SIGTERM


def test_the_server_starts_with_default_signal_dispositions(pg_target: Target, home: Path) -> None:
    # Python ignores SIGPIPE and SIGXFSZ for itself; a server started with them ignored
    # would not die on a closed pipe the way its authors expect. What this test's own
    # parent ignores (a CI runner may ignore some) is passed on unchanged, as by a shell.
    def ignored(status: str) -> int:
        line = next(line for line in status.splitlines() if line.startswith("SigIgn:"))
        return int(line.split()[1], 16)

    baseline = subprocess.run(
        ["cat", "/proc/self/status"], capture_output=True, text=True, check=True
    ).stdout
    result = run(["cat", "/proc/self/status"], pg_target.environ(), home=home)
    assert result.returncode == 0, result
    python_ignores = (1 << (signal.SIGPIPE - 1)) | (1 << (signal.SIGXFSZ - 1))
    assert ignored(result.stdout) & python_ignores == 0
    assert ignored(result.stdout) == ignored(baseline) & ~python_ignores


def test_a_command_that_does_not_exist_exits_127(pg_target: Target, home: Path) -> None:
    result = run(["no-such-server-binary"], pg_target.environ(), home=home)
    assert result.returncode == 127, result
    assert "'no-such-server-binary' was not found" in result.event("cloudboot.failed")["error"]


def test_a_command_that_cannot_be_executed_exits_126(
    pg_target: Target, home: Path, tmp_path: Path
) -> None:
    script = tmp_path / "server"
    script.write_text("#!/bin/sh\necho never\n")
    script.chmod(0o644)
    result = run([str(script)], pg_target.environ(), home=home)
    assert result.returncode == 126, result


def test_a_refused_login_never_starts_the_server(
    target: Target, home: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "server-ran"
    env = target.environ(DB_PASSWORD="wrong-password-here")
    result = run(["touch", str(marker)], env, home=home)
    assert result.returncode == 77, result
    assert not marker.exists()
    assert not target.database_exists()


def test_hooks_see_the_written_artifacts_and_the_rendered_environment(
    pg_target: Target, home: Path, tmp_path: Path
) -> None:
    # The hook is a real libpq client: psql through the service file and .pgpass that
    # the boot wrote before it waited, TLS verified, no prompt.
    out = tmp_path / "out"
    psql = reader("psql")
    hook = f"sh -c '{psql} -X -w service=app -tAc \"select current_database()\" > {out}'"
    result = run(["migrate"], pg_target.environ(CLOUDBOOT_MIGRATE_COMMAND=hook), home=home)
    assert result.returncode == 0, result
    assert out.read_text() == f"{pg_target.dbname}\n"
    names = result.names()
    assert names.index("cloudboot.render.file") < names.index("cloudboot.wait.start")


def test_mysql_database_is_created_with_utf8mb4_and_the_collation(
    mariadb_server: MariaDBServer, secret_password: str, home: Path
) -> None:
    target = make_target("mysql", mariadb_server, secret_password)
    result = run(["migrate"], target.environ(CLOUDBOOT_COLLATION="utf8mb4_bin"), home=home)
    assert result.returncode == 0, result
    columns = "DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME"
    where = f"SCHEMA_NAME = {mysql_literal(target.dbname)}"
    sql = f"SELECT {columns} FROM information_schema.SCHEMATA WHERE {where};"  # noqa: S608
    found = mariadb_server.admin_sql(sql)
    assert found.split() == ["utf8mb4", "utf8mb4_bin"]


def test_database_names_that_need_quoting_are_created(target: Target, home: Path) -> None:
    awkward = f'{target.dbname}-`x"y` é'
    result = run(["migrate"], target.environ(DB_NAME=awkward), home=home)
    assert result.returncode == 0, result
    assert target.server.database_exists(awkward)


PROBE = """
import json, sys
from bootstrap.cli import main
main(sys.argv[1:])
loaded = sorted(m for m in ("psycopg", "pymysql", "tenacity") if m in sys.modules)
print(json.dumps(loaded), file=sys.stderr)
"""


def _modules_loaded(args: list[str], env: dict[str, str], home: Path) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env=clean_env(home, env),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    last = result.stderr.strip().splitlines()[-1]
    loaded: list[str] = json.loads(last)
    return loaded


@pytest.mark.parametrize("command", [["env"], ["render", "--dry-run"]])
def test_render_and_env_load_no_driver_and_no_tenacity(
    pg_target: Target, home: Path, command: list[str]
) -> None:
    assert _modules_loaded(command, pg_target.environ(), home) == []


def test_a_boot_loads_only_its_engines_driver(target: Target, home: Path) -> None:
    loaded = _modules_loaded(["migrate"], target.environ(), home)
    driver = "psycopg" if target.engine == "postgres" else "pymysql"
    assert loaded == sorted([driver, "tenacity"])


def test_migrate_twice_changes_nothing_the_second_time(target: Target, home: Path) -> None:
    first = run(["migrate"], target.environ(), home=home)
    assert first.returncode == 0, first
    started = time.monotonic()
    second = run(["migrate"], target.environ(), home=home)
    assert second.returncode == 0, second
    assert "cloudboot.database.created" not in second.names()
    assert second.event("cloudboot.wait.ready")["database_exists"] is True
    assert time.monotonic() - started < 30
