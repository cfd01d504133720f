"""cloudboot behaves as container and CLI users expect: the boot only for the server
command, docker-library's option convention, "did you mean", options before or after the
command, durations, the user's own connection settings kept or refused (never dropped),
an exact server environment, and --version without the heavy imports.
"""

from __future__ import annotations

import json
import os
import time
import tomllib
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from bootproc import CLOUDBOOT, Target, call, make_target, run
from factories import rds_secret
from readers import clean_env, failure
from servers import HOST, PostgresServer, free_port

IMAGES = Path(__file__).resolve().parent.parent / "images"


def _image_environ(image: str, tmp_path: Path) -> tuple[dict[str, str], list[str]]:
    """The image's own cloudboot.toml with its paths mapped onto this machine, a
    database that is down (nothing listens on the port), and the image's CMD as it runs
    here: its programs, by their names, as stand-ins on PATH."""
    port = free_port()
    env = {"CLOUDBOOT_LOG_FORMAT": "json", "CLOUDBOOT_WAIT_TIMEOUT": "2"}
    if image == "phoenix":
        toml = IMAGES / "phoenix" / "cloudboot.toml"
        env["CLOUDBOOT_CA_FILE"] = str(IMAGES / "rds-global-bundle.pem")
        env["SAMPLECLUSTER_SECRET"] = rds_secret(host=HOST, port=port)
    else:
        toml = (
            IMAGES
            / "wordpress"
            / ("cloudboot.toml" if image == "wordpress" else "bitnami/cloudboot.toml")
        )
        site = tmp_path / "site"
        site.mkdir()
        (site / "wp-config-sample.php").write_bytes(
            Path("/usr/share/wordpress/wp-config-sample.php").read_bytes()
        )
        env["CLOUDBOOT_WP_CONFIG"] = str(site / "wp-config.php")
        env["CLOUDBOOT_WP_CONFIG_SAMPLE"] = str(site / "wp-config-sample.php")
        env["CLOUDBOOT_MY_CNF"] = str(tmp_path / ".my.cnf")
        env["DB_SECRET"] = rds_secret(host=HOST, port=port, engine="mysql")
    env["CLOUDBOOT_CONFIG"] = str(toml)
    stand_ins = tmp_path / "bin"
    stand_ins.mkdir()
    cmd = []
    for word in tomllib.loads(toml.read_text())["boot"]["server"]:
        if "/" not in word and word != "docker-entrypoint.sh":
            cmd.append(word)
            continue
        program = stand_ins / Path(word).name
        program.write_text("#!/bin/sh\necho stand-in\n")
        program.chmod(0o755)
        cmd.append(str(program) if "/" in word else word)
    env["PATH"] = f"{stand_ins}:{os.environ['PATH']}"
    return env, cmd


@pytest.mark.parametrize("image", ["phoenix", "wordpress", "bitnami"])
def test_another_command_runs_at_once_and_the_server_still_waits(
    image: str, tmp_path: Path, home: Path
) -> None:
    env, server = _image_environ(image, tmp_path)
    started = time.monotonic()
    result = run(["sh", "-c", "echo ok"], env, home=home)
    assert result.returncode == 0, result
    assert result.stdout == "ok\n"
    assert time.monotonic() - started < 5
    assert "cloudboot.wait.start" not in result.stderr
    direct = result.event("cloudboot.exec.direct")
    assert direct["program"] == "sh"
    # The image's CMD still waits for the database, which is down: 69 at the deadline.
    result = run(server, env, home=home)
    assert result.returncode == 69, result
    assert result.event("cloudboot.wait.start")
    assert result.elapsed >= 2
    assert "stand-in" not in result.stdout


def test_options_alone_go_to_the_server_command(target: Target, home: Path) -> None:
    server = "sh -c 'echo \"server got: $*\"' server"
    env = target.environ(CLOUDBOOT_SERVER=server)
    result = run(["--port", "8080", "--verbose"], env, home=home)
    assert result.returncode == 0, result
    assert result.stdout == "server got: --port 8080 --verbose\n"
    assert result.event("cloudboot.wait.ready")  # the server got the boot
    # After --, nothing is cloudboot's: --version goes to the server too.
    result = run(["--", "--version"], env, home=home)
    assert result.stdout == "server got: --version\n"


def test_an_interactive_shell_is_given_even_with_a_broken_configuration(home: Path) -> None:
    env = {"DB_SECRET": "{not json", "CLOUDBOOT_LOG_FORMAT": "json"}
    result = run(["sh"], env, home=home)  # stdin is closed: the shell ends at once
    assert result.returncode == 0, result
    assert result.event("cloudboot.exec.unconfigured")["program"] == "sh"
    # A non-interactive command is refused instead: it would run without its database.
    result = run(["sh", "-c", "echo should-not-run"], env, home=home)
    assert result.returncode == 78
    assert "should-not-run" not in result.stdout


@pytest.mark.parametrize(("word", "meant"), [("rendr", "render"), ("chek", "check"),
                                             ("mirgate", "migrate"), ("envv", "env")])  # fmt: skip
def test_a_near_miss_of_a_command_is_did_you_mean_not_a_boot(
    word: str, meant: str, home: Path
) -> None:
    result = run([word], {"CLOUDBOOT_LOG_FORMAT": "json"}, home=home)
    assert result.returncode == 64
    assert f"did you mean {meant!r}?" in result.stderr
    assert "cloudboot.sources" not in result.stderr


def test_options_before_or_after_the_command_and_durations(home: Path) -> None:
    env = {"DATABASE_URL": f"postgresql://u:a-long-password@{HOST}:{free_port()}/app"}
    for argv in (
        ["--log-format", "json", "--timeout", "1s", "wait"],
        ["wait", "--log-format=json", "--timeout", "1s"],
        ["wait", "--timeout", "500ms", "--log-format", "json"],
    ):
        started = time.monotonic()
        result = run(argv, env, home=home)
        assert result.returncode == 69, (argv, result)
        assert time.monotonic() - started < 5
        assert result.event("cloudboot.wait.start")["timeout_s"] in (1.0, 0.5)
    assert run(["wait", "--timeout", "soon"], env, home=home).returncode == 78
    assert run(["-V"], {}, home=home).stdout.startswith("cloudboot ")


@pytest.mark.parametrize("command", ["", "run", "render", "env", "wait", "migrate", "check"])
def test_every_option_of_every_command_is_explained(command: str) -> None:
    from bootstrap.cli import COMMANDS, GLOBAL_OPTIONS  # noqa: PLC0415

    result = call([command, "--help"] if command else ["--help"], {})
    assert result.returncode == 0
    text = result.stdout
    options = [*GLOBAL_OPTIONS, *(COMMANDS[command].options if command else ())]
    for option in options:
        line = next(line for line in text.splitlines() if line.startswith(f"  {option.flags[0]}"))
        assert len(line.split(option.flags[-1], 1)[1].strip()) > 10, line  # a meaning
        if option.variable:
            assert option.variable in text
    assert "README" in text


def test_version_and_help_import_no_pydantic_structlog_or_driver(home: Path) -> None:
    for argv in (["--version"], ["--help"], ["render", "--help"]):
        env = {**clean_env(home), "PYTHONPROFILEIMPORTTIME": "1"}
        import subprocess  # noqa: PLC0415

        result = subprocess.run(
            [*CLOUDBOOT, *argv], capture_output=True, text=True, env=env, check=False
        )
        assert result.returncode == 0
        imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
        heavy = {m for m in imported if m.split(".")[0] in ("pydantic", "pydantic_settings",
                                                             "structlog", "psycopg", "pymysql",
                                                             "tenacity")}  # fmt: skip
        assert not heavy, (argv, sorted(heavy)[:5])


def test_the_server_gets_exactly_the_given_environment_plus_the_rendered(home: Path) -> None:
    # No LANG or LC_*: Python coerces the C locale and sets LC_CTYPE for itself (PEP 538);
    # the server must not see that.
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "DATABASE_URL": f"postgresql://u:{quote('a pass', safe='')}@{HOST}:5432/app",
        "CLOUDBOOT_PGPASS": "",
        "CLOUDBOOT_PG_SERVICE_FILE": "",
        "CLOUDBOOT_LOG_LEVEL": "error",
        "CLOUDBOOT_SERVER": "/bin/false",  # sh is another command: exec'd at once
        "MY_OWN": "kept exactly",
    }
    import subprocess  # noqa: PLC0415

    result = subprocess.run(
        [*CLOUDBOOT, "sh", "-c", "env -0"], capture_output=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    seen = dict(entry.split("=", 1) for entry in result.stdout.decode().split("\0") if entry)
    seen.pop("PWD", None)  # the shell's own
    seen.pop("SHLVL", None)
    seen.pop("_", None)
    rendered = {"DATABASE_URL"}
    coverage = {name for name in seen if name.startswith("COVERAGE_")}
    assert set(seen) - coverage == set(env) | rendered, set(seen) ^ (set(env) | rendered)
    assert "LC_CTYPE" not in seen
    assert seen["MY_OWN"] == "kept exactly"


# --- the user's own connection settings ----------------------------------------------


def test_incoming_url_parameters_are_carried_or_refused(
    pg_server: PostgresServer, secret_password: str, home: Path
) -> None:
    target = make_target("postgres", pg_server, secret_password, create_database=True)
    base = (
        f"postgresql://{target.user}:{quote(target.password, safe='')}@localhost:{target.port}"
        f"/{target.dbname}"
    )
    env = {"DATABASE_URL": base + "?application_name=shop&connect_timeout=7",
           "CLOUDBOOT_CA_FILE": str(target.ca_file), "HOME": str(home)}  # fmt: skip
    result = call(["env", "--format", "json"], env, allow=[target.password])
    assert result.returncode == 0, result
    url = json.loads(result.stdout)["DATABASE_URL"]
    with psycopg.connect(url) as conn:  # libpq reads every parameter back
        assert conn.execute("show application_name").fetchone() == ("shop",)
        assert conn.info.get_parameters()["application_name"] == "shop"
    # A parameter libpq does not know would make every client fail: refused, named.
    result = call(["env"], {**env, "DATABASE_URL": base + "?pool_size=5"})
    assert result.returncode == 78
    assert "pool_size" in "\n".join(failure(result)["problems"])
    # A host in the query would contradict the target: refused.
    result = call(["env"], {**env, "DATABASE_URL": base + "?host=elsewhere"})
    assert result.returncode == 78


def test_the_users_tls_choice_is_honoured_or_refused(home: Path, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("a bundle\n")
    url = "postgresql://u:a-long-password@db.internal/app"

    def load(**env: str) -> tuple[int, str]:
        environ = {"HOME": str(home), "DATABASE_URL": url, **env}
        result = call(["env", "--format", "json"], environ, allow=["a-long-password"])
        return result.returncode, result.stdout + result.stderr

    # Honoured: libpq's own variables, and the URL's own sslmode.
    code, out = load(PGSSLMODE="verify-ca", PGSSLROOTCERT=str(ca))
    assert code == 0, out
    assert f"sslmode=verify-ca&sslrootcert={ca}" in out
    code, out = load(DATABASE_URL=url + "?sslmode=require")
    assert code == 0, out
    assert "sslmode=require" in out
    # Refused when CLOUDBOOT_SSLMODE says otherwise, for TLS off, and for "prefer".
    code, out = load(PGSSLMODE="require", CLOUDBOOT_SSLMODE="verify-full")
    assert (code, "PGSSLMODE" in out) == (78, True)
    code, out = load(PGSSLMODE="disable")
    assert (code, "only CLOUDBOOT_SSLMODE=disable" in out) == (78, True)
    code, out = load(DATABASE_URL=url + "?sslmode=prefer")
    assert (code, "opportunistic" in out) == (78, True)
    # They agree: fine.
    code, out = load(PGSSLMODE="require", CLOUDBOOT_SSLMODE="require")
    assert code == 0, out


def test_a_percent_escape_that_is_not_utf8_is_78(home: Path) -> None:
    result = call(["env"], {"HOME": str(home), "DATABASE_URL": "postgresql://u:p%FF%FE@h/app"})
    assert result.returncode == 78
    assert "percent-escape" in "\n".join(failure(result)["problems"])
