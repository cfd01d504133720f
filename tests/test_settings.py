"""cloudboot's own settings: ``CLOUDBOOT_*`` variables over the TOML file, defaults from
SPEC, hooks, and every problem reported at once without a value."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootstrap import Hook, Settings
from bootstrap.settings import load_settings


def settings_of(environ: dict[str, str]) -> Settings:
    settings, problems = load_settings(environ)
    assert settings is not None, problems
    assert not problems
    return settings


def problems_of(environ: dict[str, str]) -> list[str]:
    settings, problems = load_settings(environ)
    assert problems, f"expected problems, got {settings!r}"
    return problems


def write_toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "cloudboot.toml"
    path.write_text(text)
    return str(path)


def test_defaults_are_those_of_spec() -> None:
    settings = settings_of({})
    assert settings.sslmode == "verify-full"
    assert settings.ca_file == "system"
    assert settings.wait_timeout == 300
    assert settings.create_database is True
    assert settings.url_env is None  # DATABASE_URL, or the URL dialect's own (config.py)
    assert settings.url_scheme is None
    assert settings.pg_service_name == "app"
    assert settings.wp_collate == "utf8mb4_bin"
    assert settings.log_level == "info"
    assert settings.log_format is None
    assert settings.secret_env is None
    assert settings.engine is None
    assert settings.all_hooks() == ()
    assert settings.config is None  # /etc/cloudboot.toml does not exist here


def test_variables_are_read_and_typed() -> None:
    settings = settings_of(
        {
            "CLOUDBOOT_SSLMODE": "verify-ca",
            "CLOUDBOOT_CA_FILE": "/etc/ssl/rds.pem",
            "CLOUDBOOT_WAIT_TIMEOUT": "12.5",
            "CLOUDBOOT_CREATE_DATABASE": "false",
            "CLOUDBOOT_URL_ENV": "ECTO_URL",
            "CLOUDBOOT_URL_SCHEME": "mysql+pymysql",
            "CLOUDBOOT_ENGINE": "mysql",
            "CLOUDBOOT_WP_COLLATE": "utf8mb4_general_ci",
            "CLOUDBOOT_LOG_LEVEL": "debug",
        }
    )
    assert settings.sslmode == "verify-ca"
    assert settings.ca_file == "/etc/ssl/rds.pem"
    assert settings.wait_timeout == 12.5
    assert settings.create_database is False
    assert settings.url_env == "ECTO_URL"
    assert settings.url_scheme == "mysql+pymysql"
    assert settings.engine == "mysql"
    assert settings.wp_collate == "utf8mb4_general_ci"
    assert settings.log_level == "debug"


@pytest.mark.parametrize(
    ("text", "expected"), [("0", False), ("no", False), ("1", True), ("true", True)]
)
def test_booleans(text: str, expected: bool) -> None:
    assert settings_of({"CLOUDBOOT_CREATE_DATABASE": text}).create_database is expected


@pytest.mark.parametrize(
    ("text", "argv"),
    [
        ("apache2-foreground", ("apache2-foreground",)),
        ("true", ("true",)),  # a program, though JSON would read a boolean
        ("null", ("null",)),  # and not "unset"
        ("1", ("1",)),
        ("{}", ("{}",)),
        ("bin/server start --port '8 0'", ("bin/server", "start", "--port", "8 0")),
        ('["bin/server", "start"]', ("bin/server", "start")),  # a Dockerfile's exec form
        (' ["x y"]', ("x y",)),
    ],
)
def test_the_server_command_is_a_shell_line_or_an_exec_form_array(
    text: str, argv: tuple[str, ...]
) -> None:
    assert settings_of({"CLOUDBOOT_SERVER": text}).server == argv


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[oops", "not a JSON array of strings"),
        ("[1, 2]", "not a JSON array of strings"),
        ("[]", "must name the server's program"),
        ("'unclosed", "unclosed quote"),
    ],
)
def test_a_server_command_that_cannot_be_read_is_named(text: str, problem: str) -> None:
    (message,) = problems_of({"CLOUDBOOT_SERVER": text})
    assert message.startswith("CLOUDBOOT_SERVER: ")
    assert problem in message


def test_log_level_is_case_insensitive_as_the_command_line_treats_it() -> None:
    assert settings_of({"CLOUDBOOT_LOG_LEVEL": "DEBUG"}).log_level == "debug"
    assert settings_of({"CLOUDBOOT_LOG_FORMAT": "JSON"}).log_format == "json"


def test_an_empty_artifact_path_means_off_other_empties_mean_unset() -> None:
    settings = settings_of({"CLOUDBOOT_PGPASS": "", "CLOUDBOOT_SSLMODE": ""})
    assert settings.pgpass == ""
    assert settings.sslmode == "verify-full"


def test_the_toml_file_with_tables_and_hooks(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        """
sslmode = "verify-ca"
url_scheme = "ecto"

[tls]
ca_file = "/etc/ssl/rds-global-bundle.pem"

[artifacts]
profile = "/app/application.profile"
wp_config = "/var/www/html/wp-config.php"

[[hooks]]
name = "schema"
run = ["/app/bin/migrate", "--yes"]
timeout = 600

[[hooks]]
name = "warm"
shell = "echo warm && true"
lock = false
""",
    )
    settings = settings_of(
        {"CLOUDBOOT_CONFIG": path, "CLOUDBOOT_MIGRATE_COMMAND": "rake 'db:migrate now'"}
    )
    assert settings.config == path
    assert settings.sslmode == "verify-ca"
    assert settings.url_scheme == "ecto"
    assert settings.ca_file == "/etc/ssl/rds-global-bundle.pem"
    assert settings.profile == "/app/application.profile"
    assert settings.wp_config == "/var/www/html/wp-config.php"
    assert settings.all_hooks() == (
        Hook(name="schema", run=("/app/bin/migrate", "--yes"), timeout=600),
        Hook(name="warm", shell="echo warm && true", lock=False),  # noqa: S604 - not run
        Hook(name="migrate", run=("rake", "db:migrate now"), lock=True),
    )
    assert settings.all_hooks()[1].argv == ("/bin/sh", "-c", "echo warm && true")


def test_variables_override_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'sslmode = "verify-ca"\nwait_timeout = 30\n')
    settings = settings_of({"CLOUDBOOT_CONFIG": path, "CLOUDBOOT_SSLMODE": "require"})
    assert settings.sslmode == "require"
    assert settings.wait_timeout == 30


def test_an_empty_variable_leaves_the_files_value(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'sslmode = "verify-ca"\nprofile = "/app/profile"\n')
    settings = settings_of(
        {"CLOUDBOOT_CONFIG": path, "CLOUDBOOT_SSLMODE": "", "CLOUDBOOT_PROFILE": ""}
    )
    assert settings.sslmode == "verify-ca"
    assert settings.profile == ""  # an artifact path: empty turns it off


def test_a_named_config_file_that_does_not_exist(tmp_path: Path) -> None:
    (problem,) = problems_of({"CLOUDBOOT_CONFIG": str(tmp_path / "absent.toml")})
    assert "CLOUDBOOT_CONFIG" in problem
    assert "absent.toml" in problem


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'sslmode = "verify-full\n')
    (problem,) = problems_of({"CLOUDBOOT_CONFIG": path})
    assert path in problem
    assert "TOML" in problem


def test_hooks_need_exactly_one_command(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        '[[hooks]]\nname = "both"\nrun = ["true"]\nshell = "true"\n[[hooks]]\nname = "neither"\n',
    )
    problems = problems_of({"CLOUDBOOT_CONFIG": path})
    assert len(problems) == 2
    assert all("hooks" in p for p in problems)


def test_hooks_cannot_come_from_a_variable() -> None:
    problems = problems_of({"CLOUDBOOT_HOOKS": "[]"})
    assert any("CLOUDBOOT_HOOKS" in p and "TOML" in p for p in problems)


def test_every_settings_problem_at_once_naming_where_never_the_value(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        '[a]\nurl_env = "X"\n[b]\nurl_env = "Y"\nno_such_key = "zzz-value"\n',
    )
    environ = {
        "CLOUDBOOT_CONFIG": path,
        "CLOUDBOOT_SSLMODE": "sometimes-value",
        "CLOUDBOOT_WAIT_TIMEOUT": "-5",
        "CLOUDBOOT_URL_SCHEME": "oracle-value",
        "CLOUDBOOT_NOT_A_SETTING": "whatever-value",
    }
    settings, problems = load_settings(environ)
    assert settings is None
    joined = "\n".join(problems)
    for name in (
        "url_env is set twice",
        "no_such_key in " + path,
        "CLOUDBOOT_SSLMODE",
        "CLOUDBOOT_WAIT_TIMEOUT",
        "CLOUDBOOT_URL_SCHEME",
        "CLOUDBOOT_NOT_A_SETTING",
    ):
        assert name in joined
    assert "-value" not in joined


# --- one spelling of each name -------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("CLOUDBOOT_sslmode", "must be spelled CLOUDBOOT_SSLMODE"),
        ("cloudboot_SSLMODE", "must be spelled CLOUDBOOT_SSLMODE"),
        ("Cloudboot_SslMode", "must be spelled CLOUDBOOT_SSLMODE"),
        ("CLOUDBOOT_SSL_MODE", "did you mean CLOUDBOOT_SSLMODE?"),
        ("CLOUDBOOT_WAIT_TIMOUT", "did you mean CLOUDBOOT_WAIT_TIMEOUT?"),
    ],
)
def test_a_variable_in_another_spelling_is_refused(name: str, expected: str) -> None:
    # Even beside the right spelling: which of the two would win must not matter.
    problems = problems_of({name: "disable", "CLOUDBOOT_SSLMODE": "verify-full"})
    assert any(name in p and expected in p for p in problems), problems


def test_a_toml_key_in_another_case_is_refused(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'SSLMODE = "disable"\n[tls]\nSslMode = "require"\n')
    problems = problems_of({"CLOUDBOOT_CONFIG": path})
    assert any("SSLMODE" in p and "lower case: sslmode" in p for p in problems)
    assert any("SslMode" in p and "lower case: sslmode" in p for p in problems)


def test_one_key_given_twice_in_the_file_is_refused(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'sslmode = "verify-ca"\n[tls]\nsslmode = "disable"\n')
    (problem,) = problems_of({"CLOUDBOOT_CONFIG": path})
    assert "sslmode is set twice" in problem
    assert "disable" not in problem


def test_a_variable_always_overrides_the_file_even_an_off_path(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'pgpass = "/run/app/.pgpass"\nsslmode = "verify-ca"\n')
    settings = settings_of(
        {"CLOUDBOOT_CONFIG": path, "CLOUDBOOT_PGPASS": "", "CLOUDBOOT_SSLMODE": "verify-full"}
    )
    assert (settings.pgpass, settings.sslmode) == ("", "verify-full")
