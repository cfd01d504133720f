"""``cloudboot render`` and ``cloudboot env`` as a user runs them: a subprocess with a
fresh ``HOME``, its output checked by the leak guard.

Bad input exits 78 naming the variable and the field, never the value, with every
problem in one run and no artifact written; ``--dry-run`` writes nothing; a second run
says ``unchanged``; ``env`` output read back by ``sh``, python-dotenv and ``json`` gives
the URL exactly; no log line, at debug level either, shows a secret.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import dotenv
import pytest

from bootproc import run as cloudboot
from factories import rds_secret
from leakguard import assert_no_secret
from readers import describe, failure, log_events, run, wordpress_sample
from servers import NASTY_PASSWORDS

PASSWORD = NASTY_PASSWORDS[0]  # every awkward character, 100+ long, leak-guarded
SECOND_PASSWORD = NASTY_PASSWORDS[1]


def secret(**fields: object) -> str:
    return rds_secret(**{"host": "db.internal", "password": PASSWORD, **fields})


@pytest.fixture
def wp_folder(tmp_path: Path) -> Path:
    """A WordPress folder (outside HOME) with an existing wp-config.php and the sample."""
    folder = tmp_path / "html"
    folder.mkdir()
    shutil.copy(wordpress_sample(), folder / "wp-config-sample.php")
    (folder / "wp-config.php").write_text("<?php\ndefine( 'DB_NAME', 'kept' );\n")
    return folder


def all_artifacts(home: Path, wp_folder: Path) -> dict[str, str]:
    """Settings asking for every artifact."""
    return {
        "CLOUDBOOT_PROFILE": str(home / "app.profile"),
        "CLOUDBOOT_MY_CNF": str(home / "my.cnf"),
        "CLOUDBOOT_WP_CONFIG": str(wp_folder / "wp-config.php"),
        "CLOUDBOOT_CA_FILE": "/etc/ssl/certs/ca-certificates.crt",
    }


# --- bad input ------------------------------------------------------------------------------

BadCase = Callable[[Path], dict[str, str]]


def _two_files(tmp_path: Path) -> dict[str, str]:
    password_file = tmp_path / "password"
    password_file.write_text(SECOND_PASSWORD + "\n")
    return {
        "PGHOST": "db.internal",
        "PGDATABASE": "app",
        "PGUSER": "appuser",
        "PGPASSWORD": SECOND_PASSWORD,
        "PGPASSWORD_FILE": str(password_file),
    }


BAD_INPUT: dict[str, tuple[BadCase, tuple[str, ...], tuple[str, ...]]] = {
    # name: (environment, what the problems must name, what they must never show)
    "not JSON": (
        lambda _: {"DB_SECRET": secret()[:-20]},
        ("DB_SECRET", "JSON"),
        (),
    ),
    "a JSON array": (
        lambda _: {"CLOUDBOOT_SECRET_ENV": "DB_SECRET", "DB_SECRET": json.dumps([PASSWORD])},
        ("DB_SECRET", "array"),
        (),
    ),
    "no username": (
        lambda _: {"DB_SECRET": secret(username=None)},
        ("DB_SECRET", "'username'"),
        (),
    ),
    "no password": (
        lambda _: {"DB_SECRET": secret(password=None)},
        ("DB_SECRET", "'password'"),
        (),
    ),
    "port not a number": (
        lambda _: {"DB_SECRET": secret(port="fivefourthreetwo")},
        ("DB_SECRET", "'port'"),
        ("fivefourthreetwo",),
    ),
    "family port not a number": (
        lambda _: {
            "DB_HOST": "db.internal",
            "DB_PORT": "54x32",
            "DB_NAME": "app",
            "DB_USER": "appuser",
            "DB_PASSWORD": PASSWORD,
            "CLOUDBOOT_ENGINE": "postgres",
        },
        ("DB_PORT",),
        ("54x32",),
    ),
    "two candidates": (
        lambda _: {"DB_SECRET": secret(), "SAMPLECLUSTER_SECRET": secret(password=SECOND_PASSWORD)},
        ("DB_SECRET", "SAMPLECLUSTER_SECRET", "CLOUDBOOT_SECRET_ENV"),
        (),
    ),
    "X and X_FILE": (_two_files, ("PGPASSWORD", "PGPASSWORD_FILE"), ()),
    "unknown engine": (
        lambda _: {"DB_SECRET": secret(engine="oracle-se2")},
        ("DB_SECRET", "'engine'"),
        ("oracle-se2",),
    ),
    "unknown CLOUDBOOT_ENGINE": (
        lambda _: {"DB_SECRET": secret(), "CLOUDBOOT_ENGINE": "sqlserver"},
        ("CLOUDBOOT_ENGINE",),
        ("sqlserver",),
    ),
    "CR in the password": (
        lambda _: {"DB_SECRET": secret(password=PASSWORD + "\rafter-the-cr")},
        ("DB_SECRET", "'password'", "CR"),
        ("after-the-cr",),
    ),
    "LF in the user": (
        lambda _: {"DB_SECRET": secret(username="appuser\nafter-the-lf")},
        ("DB_SECRET", "'username'", "LF"),
        ("after-the-lf",),
    ),
    "NUL in the host": (
        lambda _: {"DB_SECRET": secret(host="db.internal\0after-the-nul")},
        ("DB_SECRET", "'host'", "NUL"),
        ("after-the-nul",),
    ),
    "LF in a family variable": (
        lambda _: {
            "PGHOST": "db.internal",
            "PGDATABASE": "app\nafter-the-lf",
            "PGUSER": "appuser",
            "PGPASSWORD": PASSWORD,
        },
        ("PGDATABASE",),
        ("after-the-lf",),
    ),
    "no database name": (
        lambda _: {"DB_SECRET": secret(dbname=None)},
        ("DB_SECRET", "'dbname'"),
        (),
    ),
    "a bad setting": (
        lambda _: {"DB_SECRET": secret(), "CLOUDBOOT_SSLMODE": "whenever-possible"},
        ("CLOUDBOOT_SSLMODE",),
        ("whenever-possible",),
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_exits_78_naming_what_is_wrong_and_writes_nothing(
    case: str, home: Path, tmp_path: Path, wp_folder: Path
) -> None:
    make_env, named, never = BAD_INPUT[case]
    wp_config = wp_folder / "wp-config.php"
    before = wp_config.read_bytes(), wp_config.stat().st_mtime_ns
    env = {**all_artifacts(home, wp_folder), **make_env(tmp_path)}
    result = cloudboot(["render"], env, home=home)  # the leak guard reads its output
    assert result.returncode == 78, describe(result)
    event = failure(result)
    assert event["exit_code"] == 78
    text = "\n".join(event["problems"])
    for name in named:
        assert name in text, f"{name!r} not named in {event['problems']}"
    for value in never:
        assert value not in result.stderr
        assert value not in result.stdout
    assert result.stdout == ""
    assert list(home.iterdir()) == []
    assert (wp_config.read_bytes(), wp_config.stat().st_mtime_ns) == before
    assert sorted(p.name for p in wp_folder.iterdir()) == ["wp-config-sample.php", "wp-config.php"]


def test_every_problem_in_one_run(home: Path) -> None:
    env = {
        "DB_SECRET": secret(port="nope-port", engine="db2-engine", username=None),
        "CLOUDBOOT_SSLMODE": "sometimes",
        "CLOUDBOOT_WAIT_TIMEOUT": "soon",
    }
    result = cloudboot(["render"], env, home=home)
    assert result.returncode == 78, describe(result)
    problems = failure(result)["problems"]
    text = "\n".join(problems)
    for name in ("'port'", "'engine'", "'username'", "CLOUDBOOT_SSLMODE", "CLOUDBOOT_WAIT_TIMEOUT"):
        assert name in text
    assert len(problems) >= 5
    for value in ("nope-port", "db2-engine", "sometimes", "soon"):
        assert value not in result.stderr


def test_a_problem_in_one_artifact_writes_no_other(home: Path, tmp_path: Path) -> None:
    no_sample = tmp_path / "empty-folder"
    no_sample.mkdir()
    env = {
        "DB_SECRET": secret(engine="mysql"),
        "CLOUDBOOT_PROFILE": str(home / "app.profile"),
        "CLOUDBOOT_WP_CONFIG": str(no_sample / "wp-config.php"),
    }
    result = cloudboot(["render"], env, home=home)
    assert result.returncode == 78, describe(result)
    assert "CLOUDBOOT_WP_CONFIG" in "\n".join(failure(result)["problems"])
    assert list(home.iterdir()) == []  # .pgpass, .pg_service.conf and the profile neither
    assert list(no_sample.iterdir()) == []


def test_source_precedence_through_the_command_line(home: Path) -> None:
    family = {
        "PGHOST": "family.internal",
        "PGDATABASE": "familydb",
        "PGUSER": "familyuser",
        "PGPASSWORD": SECOND_PASSWORD,
    }
    url = {"DATABASE_URL": "postgresql://urluser:url-password@url.internal:5432/urldb"}
    for env, host in (
        ({"DB_SECRET": secret(), "WEBHOOK_SECRET": "abc", **family, **url}, "db.internal"),
        ({"WEBHOOK_SECRET": "abc", **family, **url}, "family.internal"),
        ({"WEBHOOK_SECRET": "abc", **url}, "url.internal"),
    ):
        result = cloudboot(
            ["env", "--format", "json"], env, home=home, allow=[PASSWORD, SECOND_PASSWORD]
        )
        assert result.returncode == 0, describe(result)
        assert f"@{host}:5432/" in json.loads(result.stdout)["DATABASE_URL"]


# --- render ---------------------------------------------------------------------------------


def artifacts_by_engine(home: Path, wp_folder: Path) -> dict[str, dict[str, str]]:
    """Every artifact kind, split by the engine whose tools read it: a PostgreSQL secret
    gets ``.pgpass``, ``.pg_service.conf`` and the profile; a MySQL-family one the
    profile, the defaults file and ``wp-config.php`` (another engine's file is refused)."""
    profile = {"CLOUDBOOT_PROFILE": str(home / "app.profile")}
    mysql = {**all_artifacts(home, wp_folder), "DB_SECRET": secret(engine="mysql", port=3306)}
    return {"postgres": {"DB_SECRET": secret(), **profile}, "mysql": mysql}


EXPECTED_ROWS = {
    "postgres": {
        "pgpass": ("0600", ".pgpass"),
        "pg_service": ("0600", ".pg_service.conf"),
        "profile": ("0600", "app.profile"),
    },
    "mysql": {
        "profile": ("0600", "app.profile"),
        "my_cnf": ("0600", "my.cnf"),
        "wp_config": ("0640", "wp-config.php"),
    },
}


@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_dry_run_writes_nothing_and_masks_the_password(
    home: Path, wp_folder: Path, engine: str
) -> None:
    (wp_folder / "wp-config.php").unlink()
    env = artifacts_by_engine(home, wp_folder)[engine]
    result = cloudboot(["render", "--dry-run"], env, home=home)
    assert result.returncode == 0, describe(result)
    assert list(home.iterdir()) == []
    assert sorted(p.name for p in wp_folder.iterdir()) == ["wp-config-sample.php"]
    lines = result.stdout.splitlines()
    assert lines[-1] == "(dry run: nothing written)"
    scheme, port = ("postgresql", 5432) if engine == "postgres" else ("mysql", 3306)
    assert any(
        x.startswith("create") and f"DATABASE_URL={scheme}://appuser:***@db.internal" in x
        for x in lines
    )
    for mode, name in EXPECTED_ROWS[engine].values():
        assert any(
            x.startswith("create") and mode in x and Path(x.split()[2]).name == name for x in lines
        ), name

    result = cloudboot(["render", "--dry-run", "--json"], env, home=home)
    assert result.returncode == 0, describe(result)
    report = json.loads(result.stdout)
    assert report["dry_run"] is True
    rows = report["artifacts"]
    url_row = next(r for r in rows if r.get("variable") == "DATABASE_URL")
    assert url_row["value"].startswith(f"{scheme}://appuser:***@db.internal:{port}/app?")
    assert {r["kind"]: (r["mode"], r["action"]) for r in rows if "kind" in r} == {
        kind: (mode, "create") for kind, (mode, _) in EXPECTED_ROWS[engine].items()
    }
    assert list(home.iterdir()) == []


@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_render_writes_then_reports_unchanged(home: Path, wp_folder: Path, engine: str) -> None:
    (wp_folder / "wp-config.php").unlink()
    env = artifacts_by_engine(home, wp_folder)[engine]
    result = cloudboot(["render", "--json"], env, home=home)
    assert result.returncode == 0, describe(result)
    first = json.loads(result.stdout)
    assert first["dry_run"] is False
    assert {r["action"] for r in first["artifacts"] if "kind" in r} == {"create"}
    written = sorted(p.name for p in home.iterdir())
    in_home = sorted(n for kind, (_, n) in EXPECTED_ROWS[engine].items() if kind != "wp_config")
    assert written == in_home
    for name in written:
        assert (home / name).stat().st_mode & 0o777 == 0o600
    events = [e["event"] for e in log_events(result.stderr)]
    assert "cloudboot.render.file" in events

    result = cloudboot(["render"], env, home=home)
    assert result.returncode == 0, describe(result)
    file_lines = [x for x in result.stdout.splitlines() if " env " not in x]
    assert len(file_lines) == 3
    assert all(x.startswith("unchanged") for x in file_lines), result.stdout
    # A changed password is an update of exactly the files that hold it.
    fields = {} if engine == "postgres" else {"engine": "mysql", "port": 3306}
    env["DB_SECRET"] = secret(password=SECOND_PASSWORD, **fields)
    result = cloudboot(["render", "--json"], env, home=home)
    actions = {
        r["kind"]: r["action"] for r in json.loads(result.stdout)["artifacts"] if "kind" in r
    }
    holds_password = {"pgpass", "profile", "my_cnf", "wp_config"}
    assert actions == {
        kind: "update" if kind in holds_password else "unchanged" for kind in EXPECTED_ROWS[engine]
    }


# --- env ------------------------------------------------------------------------------------


def test_env_formats_give_back_the_url_exactly(home: Path) -> None:
    env = {"DB_SECRET": secret(), "CLOUDBOOT_CA_FILE": "/etc/ssl/certs/ca-certificates.crt"}
    result = cloudboot(["env", "--format", "json"], env, home=home, allow=[PASSWORD])
    assert result.returncode == 0, describe(result)
    # env writes no file, and names no path to a file that is not there.
    assert set(json.loads(result.stdout)) == {"DATABASE_URL"}
    assert list(home.iterdir()) == []
    assert cloudboot(["render"], env, home=home).returncode == 0
    result = cloudboot(["env", "--format", "json"], env, home=home, allow=[PASSWORD])
    variables = json.loads(result.stdout)
    assert set(variables) == {"DATABASE_URL", "PGPASSFILE", "PGSERVICEFILE"}
    url = variables["DATABASE_URL"]
    assert url.startswith("postgresql://appuser:")

    for args in (["env"], ["env", "--format", "shell"]):
        result = cloudboot(args, env, home=home, allow=[PASSWORD])
        assert result.returncode == 0, describe(result)
        assert all(x.startswith("export ") for x in result.stdout.splitlines())
        (home / "env.sh").write_text(result.stdout)
        (home / "env.sh").chmod(0o600)
        script = (
            'eval "$(cat env.sh)"; '
            'printf "%s\\0%s\\0%s" "$DATABASE_URL" "$PGPASSFILE" "$PGSERVICEFILE"'
        )
        shell = run(["sh", "-c", script], home=home)
        assert shell.returncode == 0, describe(shell)
        assert shell.stdout.split("\0") == [
            url,
            variables["PGPASSFILE"],
            variables["PGSERVICEFILE"],
        ]
        (home / "env.sh").unlink()

    result = cloudboot(["env", "--format", "dotenv"], env, home=home, allow=[PASSWORD])
    assert result.returncode == 0, describe(result)
    assert dotenv.dotenv_values(stream=io.StringIO(result.stdout), interpolate=False) == variables


# --- logs and the program itself ------------------------------------------------------------


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_debug_logs_show_no_secret(home: Path, wp_folder: Path, log_format: str) -> None:
    env = {
        "DB_SECRET": secret(engine="mysql"),
        **all_artifacts(home, wp_folder),
        "CLOUDBOOT_LOG_LEVEL": "debug",
        "CLOUDBOOT_LOG_FORMAT": log_format,
    }
    result = cloudboot(["render"], env, home=home)  # stdout and stderr leak-checked
    assert result.returncode == 0, describe(result)
    assert "cloudboot.sources.found" in result.stderr
    assert "cloudboot.render.file" in result.stderr
    # The failure path at debug level too: a bad port next to a good password.
    env["DB_SECRET"] = secret(port="bad-port", engine="mysql")
    result = cloudboot(["render"], env, home=home)
    assert result.returncode == 78
    # JSON logs carry the failure as an event; a person at a console reads plain lines.
    expected = "cloudboot.failed" if log_format == "json" else "cloudboot: error: DB_SECRET"
    assert expected in result.stderr
    assert_no_secret(result.stderr)


def test_version_from_the_console_script_and_python_m(home: Path) -> None:
    script = Path(sys.executable).parent / "cloudboot"
    by_script = run([str(script), "--version"], home=home)
    by_module = run([sys.executable, "-m", "bootstrap", "--version"], home=home)
    assert by_script.returncode == by_module.returncode == 0
    assert by_script.stdout == by_module.stdout
    assert by_script.stdout.startswith("cloudboot ")


FREEZE_PROBE = """
import gc, sys
from bootstrap.cli import main
before = gc.get_freeze_count()
main(["env"], {})  # no credentials: 78, quickly
in_process = gc.get_freeze_count()
sys.argv = ["cloudboot", "env"]
main()
print(before, in_process, gc.get_freeze_count() > 0)
"""


def test_only_the_program_freezes_the_collector(home: Path) -> None:
    """``main()`` run as the program freezes what is loaded (a faster exit); called with
    an argv, as a library caller does, it leaves the caller's collector alone."""
    result = run([sys.executable, "-c", FREEZE_PROBE], home=home)
    assert result.returncode == 0, describe(result)
    before, in_process, frozen = result.stdout.split()[-3:]
    assert before == in_process == "0"
    assert frozen == "True"
