"""Every input is judged at load, all at once: each class of bad setting or credential
ends ``render --dry-run``, ``check`` and the boot alike with exit 78, one error naming
the variable and the field, never the value, and no file written.

(``test_sources`` and ``test_settings`` cover the sources and the settings one by one;
this module holds the classes the architecture issue lists, through the real entry
point.)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from bootproc import call, run
from factories import rds_secret
from readers import failure

# An awkward marker in every bad value: it must never show in the output.
BAD = "Bad\u00a7Value"

Case = Callable[[Path], dict[str, str]]


def _mysql(**fields: object) -> dict[str, str]:
    return {"DB_SECRET": rds_secret(engine="mysql", port=3306, **fields)}


def _pg(**fields: object) -> dict[str, str]:
    return {"DB_SECRET": rds_secret(**fields)}


def _hooks_file(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "cloudboot.toml"
    path.write_text(text)
    return {"CLOUDBOOT_CONFIG": str(path)}


TWO_HOOKS_OF_ONE_NAME = """
[[hooks]]
name = "m"
run = ["a"]

[[hooks]]
name = "m"
run = ["b"]
"""

CASES: dict[str, tuple[Case, tuple[str, ...]]] = {
    # name: (the environment, what the one error must name)
    "owner that does not exist": (
        lambda _: {**_pg(), "CLOUDBOOT_OWNER": f"{BAD}-user"},
        ("CLOUDBOOT_OWNER",),
    ),
    "collation that is not a name": (
        lambda _: {**_mysql(), "CLOUDBOOT_COLLATION": f"utf8mb4_bin; DROP {BAD}"},
        ("CLOUDBOOT_COLLATION",),
    ),
    "release id over the runs table's limit": (
        lambda _: {**_mysql(), "CLOUDBOOT_RELEASE": BAD + "r" * 200},
        ("CLOUDBOOT_RELEASE",),
    ),
    "hook name over the runs table's limit": (
        lambda tmp: {
            **_mysql(),
            **_hooks_file(tmp, f'[[hooks]]\nname = "{BAD}{"h" * 200}"\nrun = ["true"]\n'),
        },
        ("hook",),
    ),
    "two hooks of one name": (
        lambda tmp: {
            **_pg(),
            **_hooks_file(tmp, TWO_HOOKS_OF_ONE_NAME),
        },
        ("hook names must be unique",),
    ),
    "migrate command that does not split": (
        lambda _: {**_pg(), "CLOUDBOOT_MIGRATE_COMMAND": f"bin/migrate '{BAD}"},
        ("CLOUDBOOT_MIGRATE_COMMAND",),
    ),
    "URL variable that is not a variable name": (
        lambda _: {**_pg(), "CLOUDBOOT_URL_ENV": f"DATABASE-{BAD}"},
        ("CLOUDBOOT_URL_ENV",),
    ),
    "path with a line break": (
        lambda tmp: {**_pg(), "CLOUDBOOT_PROFILE": f"{tmp}/app\n{BAD}.profile"},
        ("CLOUDBOOT_PROFILE", "LF"),
    ),
    "service name that is not a section name": (
        lambda _: {**_pg(), "CLOUDBOOT_PG_SERVICE_NAME": f"app]\n[{BAD}"},
        ("CLOUDBOOT_PG_SERVICE_NAME",),
    ),
    "two artifacts on one path": (
        lambda tmp: {**_pg(), "CLOUDBOOT_PROFILE": str(Path.home() / ".pgpass")},
        ("CLOUDBOOT_PROFILE", "CLOUDBOOT_PGPASS", "same file"),
    ),
    "host with a port": (
        lambda _: _pg(host=f"db{BAD}.internal:5432"),
        ("DB_SECRET field 'host'",),
    ),
    "host that is a list": (
        lambda _: {
            "PGHOST": "a.internal,b.internal",
            "PGDATABASE": "app",
            "PGUSER": "u",
            "PGPASSWORD": BAD + "pw",
        },
        ("PGHOST", "list"),
    ),
    "host that is a path": (
        lambda _: {
            "DB_HOST": "/var/run/postgresql",
            "DB_NAME": "app",
            "DB_USER": "u",
            "DB_PASSWORD": BAD + "pw",
            "CLOUDBOOT_ENGINE": "postgres",
        },
        ("DB_HOST", "path"),
    ),
    "host with white space": (
        lambda _: _pg(host=f"db {BAD}"),
        ("DB_SECRET field 'host'", "white space"),
    ),
    "host with a control character": (
        lambda _: _pg(host=f"db\x07{BAD}"),
        ("DB_SECRET field 'host'",),
    ),
    "text that is not valid Unicode": (
        lambda _: {"DB_SECRET": rds_secret(username="\ud800" + BAD)},
        ("DB_SECRET field 'username'", "UTF-8"),
    ),
    "a secret far larger than any": (
        lambda _: {"DB_SECRET": rds_secret(note=BAD * 9000)},
        ("DB_SECRET", "larger than"),
    ),
    "a secret nested too deep": (
        lambda _: {"DB_SECRET": '{"host": "h", "x": ' + "[" * 5000 + "]" * 5000 + "}"},
        ("DB_SECRET", "deeper"),
    ),
    "a database name PostgreSQL would cut": (
        lambda _: _pg(dbname=BAD + "d" * 64),
        ("DB_SECRET field 'dbname'", "63 bytes"),
    ),
    "a setting in another case": (
        lambda _: {**_pg(), "CLOUDBOOT_SslMode": "disable"},
        ("CLOUDBOOT_SslMode", "CLOUDBOOT_SSLMODE"),
    ),
    "a file of the other engine's tools": (
        lambda tmp: {**_pg(), "CLOUDBOOT_MY_CNF": str(tmp / f"{BAD}.cnf")},
        ("CLOUDBOOT_MY_CNF",),
    ),
}


def _checked(result_code: int, stdout: str, stderr: str, named: tuple[str, ...]) -> None:
    assert result_code == 78, f"exit {result_code}\n{stdout}\n{stderr}"
    assert BAD not in stdout
    assert BAD not in stderr
    assert json.dumps(BAD)[1:-1] not in stderr
    for name in named:
        assert name in stdout + stderr, f"{name!r} is not named:\n{stdout}\n{stderr}"


@pytest.mark.parametrize("case", list(CASES))
def test_render_dry_run_refuses_with_78_naming_it(case: str, tmp_path: Path, home: Path) -> None:
    make, named = CASES[case]
    env = {"HOME": str(home), **make(tmp_path)}
    result = call(["render", "--dry-run"], env)
    _checked(result.returncode, result.stdout, result.stderr, named)
    event = failure(result)
    assert event["exit_code"] == 78
    assert len(event["problems"]) >= 1
    assert list(home.iterdir()) == []


@pytest.mark.parametrize("case", list(CASES))
def test_check_refuses_at_its_sources_step(case: str, tmp_path: Path, home: Path) -> None:
    make, named = CASES[case]
    result = call(["check", "--json"], {"HOME": str(home), **make(tmp_path)})
    report = json.loads(result.stdout)
    assert [step["name"] for step in report["steps"]] == ["sources"]
    step = report["steps"][0]
    _checked(result.returncode, step["error"] + "\n".join(step["detail"]["problems"]), "", named)


@pytest.mark.parametrize("case", list(CASES))
def test_the_boot_refuses_before_writing_or_waiting(case: str, tmp_path: Path, home: Path) -> None:
    make, named = CASES[case]
    result = run(["--", "true"], {**make(tmp_path), "CLOUDBOOT_LOG_FORMAT": "json"}, home=home)
    _checked(result.returncode, result.stdout, result.stderr, named)
    assert "cloudboot.wait.start" not in result.stderr
    assert list(home.iterdir()) == []


def test_every_problem_of_every_class_in_one_error(tmp_path: Path, home: Path) -> None:
    env = {
        "HOME": str(home),
        "DB_SECRET": rds_secret(host="db.internal:5432", dbname="d" * 70),
        "CLOUDBOOT_OWNER": "no-such-user-anywhere",
        "CLOUDBOOT_URL_ENV": "1URL",
        "CLOUDBOOT_MIGRATE_COMMAND": "'",
    }
    result = call(["render", "--dry-run"], env)
    assert result.returncode == 78
    problems = "\n".join(failure(result)["problems"])
    for name in ("'host'", "CLOUDBOOT_URL_ENV", "CLOUDBOOT_MIGRATE_COMMAND"):
        assert name in problems


def test_a_missing_server_command_fails_before_the_wait(home: Path) -> None:
    # The database (port 9) would never answer: a doomed boot must not wait for it.
    env = {"DATABASE_URL": "postgresql://u:a-password@127.0.0.1:9/app"}
    result = run(["--", "/nonexistent/server"], {**env, "CLOUDBOOT_LOG_FORMAT": "json"}, home=home)
    assert result.returncode == 127, result
    assert "cloudboot.wait.start" not in result.stderr
    assert result.elapsed < 10
    assert list(home.iterdir()) == []  # not even the artifacts
    not_executable = home.parent / "not-executable"
    not_executable.write_text("#!/bin/sh\n")
    result = run(["--", str(not_executable)], env, home=home)
    assert result.returncode == 126, result
