"""Where the credentials come from: the four sources in SPEC's order, ``NAME_FILE``,
engine detection, and every problem reported at once without a value in any message.

These drive the library (:func:`bootstrap.load`) with plain dicts; ``test_cli_render``
proves the same through the real command line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bootstrap import ConfigError, Target, load
from factories import rds_secret

PASSWORD = "s3cret:pa@ss/w?rd#%+ 'q\"\\$`é"
OTHER_PASSWORD = "0ther-Passw0rd!"


def secret(**fields: Any) -> str:
    """An AWS Secrets Manager RDS secret, as Copilot injects it, with ``fields`` changed
    (a field given as ``None`` is left out)."""
    return rds_secret(**{"password": PASSWORD, **fields})


@dataclass(frozen=True)
class Found:
    """What a test asks of a load: the target, and where it came from."""

    target: Target
    source: str
    variables: tuple[str, ...]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


def load_ok(environ: dict[str, str]) -> Found:
    config = load(environ)
    return Found(config.target, config.source.label, config.source.variables)


def problems_of(environ: dict[str, str]) -> tuple[str, ...]:
    """The problems of the one :class:`ConfigError` ``load`` raises; no password and no
    value of a password or secret variable shows in them."""
    with pytest.raises(ConfigError) as caught:
        load(environ)
    error = caught.value
    assert error.exit_code == 78
    hidden = [PASSWORD, OTHER_PASSWORD]
    hidden += [v for k, v in environ.items() if k.endswith(("PASSWORD", "_SECRET"))]
    for value in hidden:
        assert value not in str(error)
    return error.problems


def test_copilot_db_secret() -> None:
    found = load_ok({"DB_SECRET": secret()})
    assert found.engine == "postgres"
    assert found.host == "sample-cluster.cluster-abc.eu-west-1.rds.amazonaws.com"
    assert found.port == 5432
    assert found.dbname == "app"
    assert found.user == "appuser"
    assert found.password.reveal() == PASSWORD
    assert found.source == "DB_SECRET"
    assert found.variables == ("DB_SECRET",)


@pytest.mark.parametrize("name", ["SAMPLECLUSTER_SECRET", "MY_CLUSTER_SECRET", "X_SECRET"])
def test_copilot_storage_names_are_detected(name: str) -> None:
    assert load_ok({name: secret()}).source == name


def test_port_as_a_string_and_missing_port_defaults_by_engine() -> None:
    assert load_ok({"DB_SECRET": secret(port="6543")}).port == 6543
    assert load_ok({"DB_SECRET": secret(port=None)}).port == 5432
    assert load_ok({"DB_SECRET": secret(port=None, engine="mysql")}).port == 3306


def test_a_secret_that_is_not_a_candidate_is_left_alone() -> None:
    environ = {
        "WEBHOOK_SECRET": "abc",
        "SIGNING_SECRET": json.dumps({"key": "value"}),  # an object, but no host
        "DB_SECRET": secret(),
    }
    assert load_ok(environ).source == "DB_SECRET"
    # And with no candidate at all, the next sources are used.
    found = load_ok({"WEBHOOK_SECRET": "abc", "DATABASE_URL": "postgresql://u:p@db.internal/app"})
    assert found.source == "DATABASE_URL"


def test_two_candidates_name_both_and_the_setting_to_choose() -> None:
    (problem,) = problems_of({"DB_SECRET": secret(), "SAMPLECLUSTER_SECRET": secret()})
    assert "DB_SECRET" in problem
    assert "SAMPLECLUSTER_SECRET" in problem
    assert "CLOUDBOOT_SECRET_ENV" in problem


def test_cloudboot_secret_env_chooses_and_wins_over_everything() -> None:
    environ = {
        "DB_SECRET": secret(),
        "SAMPLECLUSTER_SECRET": secret(username="other", password=OTHER_PASSWORD),
        "PGHOST": "pg.internal",
        "PGDATABASE": "pgdb",
        "PGUSER": "pguser",
        "PGPASSWORD": OTHER_PASSWORD,
        "DATABASE_URL": "postgresql://url:pw@url.internal/urldb",
        "CLOUDBOOT_SECRET_ENV": "SAMPLECLUSTER_SECRET",
    }
    found = load_ok(environ)
    assert found.source == "SAMPLECLUSTER_SECRET"
    assert found.user == "other"
    # It may name a variable that does not end in _SECRET, too.
    environ = {"APP_DB": secret(username="named"), "CLOUDBOOT_SECRET_ENV": "APP_DB"}
    assert load_ok(environ).user == "named"


def test_cloudboot_secret_env_naming_nothing_is_an_error_not_a_fallback() -> None:
    environ = {
        "CLOUDBOOT_SECRET_ENV": "MISSING_SECRET",
        "DATABASE_URL": "postgresql://u:p@h/db",
    }
    (problem,) = problems_of(environ)
    assert "CLOUDBOOT_SECRET_ENV" in problem
    assert "MISSING_SECRET" in problem


def test_a_secret_wins_over_families_and_database_url() -> None:
    environ = {
        "DB_SECRET": secret(),
        "DB_HOST": "family.internal",
        "DB_PORT": "5432",
        "DB_NAME": "familydb",
        "DB_USER": "familyuser",
        "DB_PASSWORD": OTHER_PASSWORD,
        "DATABASE_URL": "postgresql://u:p@url.internal/urldb",
    }
    assert load_ok(environ).source == "DB_SECRET"


FAMILIES = {
    "WORDPRESS_DATABASE_*": {
        "WORDPRESS_DATABASE_HOST": "bitnami.internal",
        "WORDPRESS_DATABASE_PORT_NUMBER": "3307",
        "WORDPRESS_DATABASE_NAME": "bitnami_wordpress",
        "WORDPRESS_DATABASE_USER": "bn_wordpress",
        "WORDPRESS_DATABASE_PASSWORD": OTHER_PASSWORD,
    },
    "WORDPRESS_DB_*": {
        "WORDPRESS_DB_HOST": "official.internal:3308",
        "WORDPRESS_DB_NAME": "wordpress",
        "WORDPRESS_DB_USER": "wp",
        "WORDPRESS_DB_PASSWORD": OTHER_PASSWORD,
    },
    "DB_*": {
        "DB_HOST": "db.internal",
        "DB_PORT": "5433",
        "DB_NAME": "dbname",
        "DB_USER": "dbuser",
        "DB_PASSWORD": OTHER_PASSWORD,
    },
    "PG*": {
        "PGHOST": "pg.internal",
        "PGPORT": "5434",
        "PGDATABASE": "pgdb",
        "PGUSER": "pguser",
        "PGPASSWORD": OTHER_PASSWORD,
    },
}
EXPECTED = {
    "WORDPRESS_DATABASE_*": ("mysql", "bitnami.internal", 3307, "bitnami_wordpress"),
    "WORDPRESS_DB_*": ("mysql", "official.internal", 3308, "wordpress"),
    # DB_* has no engine of its own: 5433 says nothing, so CLOUDBOOT_ENGINE decides.
    "DB_*": ("postgres", "db.internal", 5433, "dbname"),
    "PG*": ("postgres", "pg.internal", 5434, "pgdb"),
}


@pytest.mark.parametrize("label", list(FAMILIES))
def test_each_family_alone(label: str) -> None:
    environ = dict(FAMILIES[label])
    if label == "DB_*":
        environ["CLOUDBOOT_ENGINE"] = "postgres"
    found = load_ok(environ)
    assert found.source == label
    assert (found.engine, found.host, found.port, found.dbname) == EXPECTED[label]
    assert found.password.reveal() == OTHER_PASSWORD


def test_family_order_and_database_url_last() -> None:
    order = list(FAMILIES)
    for index, label in enumerate(order):
        environ = {"DATABASE_URL": "postgresql://u:p@url.internal/urldb"}
        for later in order[index:]:
            environ.update(FAMILIES[later])
        environ["CLOUDBOOT_ENGINE"] = "postgres"
        assert load_ok(environ).source == label, f"{label} should win over {order[index:]}"


def test_a_field_the_winning_source_lacks_is_not_filled_from_another() -> None:
    environ = {"DB_SECRET": secret(dbname=None), "PGDATABASE": "pgdb", "DB_NAME": "x"}
    (problem,) = problems_of(environ)
    assert "DB_SECRET" in problem
    assert "dbname" in problem
    environ = {**FAMILIES["DB_*"], "PGPASSWORD": "from-another-family"}
    environ["CLOUDBOOT_ENGINE"] = "postgres"
    del environ["DB_PASSWORD"]
    (problem,) = problems_of(environ)
    assert "DB_PASSWORD" in problem


def test_wordpress_db_host_may_carry_the_port_or_an_ipv6_address() -> None:
    base = {k: v for k, v in FAMILIES["WORDPRESS_DB_*"].items() if k != "WORDPRESS_DB_HOST"}
    for host, expected in (
        ("db.internal", ("db.internal", 3306)),
        ("db.internal:4000", ("db.internal", 4000)),
        ("[::1]:3310", ("::1", 3310)),
        ("[fd00::5]", ("fd00::5", 3306)),
    ):
        found = load_ok({**base, "WORDPRESS_DB_HOST": host})
        assert (found.host, found.port) == expected, host


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u%40x:p%3Aw%2F%25@db.internal:6432/my%20db", ("postgres", 6432)),
        ("postgres://u%40x:p%3Aw%2F%25@db.internal/my%20db", ("postgres", 5432)),
        ("mysql://u%40x:p%3Aw%2F%25@db.internal/my%20db", ("mysql", 3306)),
        ("mysql+pymysql://u%40x:p%3Aw%2F%25@db.internal:3307/my%20db", ("mysql", 3307)),
        ("mariadb://u%40x:p%3Aw%2F%25@db.internal/my%20db", ("mysql", 3306)),
        ("ecto://u%40x:p%3Aw%2F%25@db.internal:5432/my%20db", ("postgres", 5432)),
        ("ecto://u%40x:p%3Aw%2F%25@db.internal:4000/my%20db", ("mysql", 4000)),
    ],
)
def test_database_url_is_percent_decoded(url: str, expected: tuple[str, int]) -> None:
    found = load_ok({"DATABASE_URL": url})
    assert (found.engine, found.port) == expected
    assert found.user == "u@x"
    assert found.password.reveal() == "p:w/%"
    assert found.dbname == "my db"
    assert found.host == "db.internal"


def test_database_url_keeps_a_plus_and_brackets_an_ipv6_host() -> None:
    found = load_ok({"DATABASE_URL": "postgresql://u:a+b@[::1]:5432/db"})
    assert found.password.reveal() == "a+b"
    assert found.host == "::1"


# --- NAME_FILE --------------------------------------------------------------------------


def test_name_file_drops_exactly_one_trailing_newline(tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    environ = {**FAMILIES["PG*"], "PGPASSWORD_FILE": str(password_file)}
    del environ["PGPASSWORD"]
    # (Distinctive values: every password cloudboot loads is leak-guarded for the run.)
    password_file.write_text("  file pass\u00a7word  \n")
    assert load_ok(environ).password.reveal() == "  file pass\u00a7word  "
    password_file.write_text("file-pass\u00a7without-newline")
    assert load_ok(environ).password.reveal() == "file-pass\u00a7without-newline"
    # Two newlines: one is dropped, the other stays, and a LF no reader can take is an error.
    password_file.write_text("two\n\n")
    (problem,) = problems_of(environ)
    assert "PGPASSWORD" in problem
    assert "LF" in problem


def test_the_secret_itself_may_come_from_a_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "db_secret.json"
    secret_file.write_text(secret(username="fromfile") + "\n")
    found = load_ok({"CLOUDBOOT_SECRET_ENV": "DB_SECRET", "DB_SECRET_FILE": str(secret_file)})
    assert found.user == "fromfile"
    assert found.source == "DB_SECRET"
    named = load_ok({"CLOUDBOOT_SECRET_ENV": "APP", "APP_FILE": str(secret_file)})
    assert named.user == "fromfile"


def test_a_secret_file_is_not_opened_just_to_see(tmp_path: Path) -> None:
    # Auto-detection looks at *_SECRET values only: a *_SECRET_FILE (a FIFO here, which
    # an open would block on) is read when CLOUDBOOT_SECRET_ENV names it, and the
    # message says so.
    fifo = tmp_path / "webhook"
    os.mkfifo(fifo)
    (problem,) = problems_of({"DB_SECRET_FILE": str(fifo)})
    assert "CLOUDBOOT_SECRET_ENV=DB_SECRET" in problem
    url = "postgresql://u:p@db.internal/app"
    assert load_ok({"WEBHOOK_SECRET_FILE": str(fifo), "DATABASE_URL": url}).host == "db.internal"


def test_name_and_name_file_both_set_is_an_error(tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(OTHER_PASSWORD)
    environ = {**FAMILIES["PG*"], "PGPASSWORD_FILE": str(password_file)}
    (problem,) = problems_of(environ)
    assert "PGPASSWORD" in problem
    assert "PGPASSWORD_FILE" in problem
    secret_file = tmp_path / "secret.json"
    secret_file.write_text(secret())
    problems = problems_of({"DB_SECRET": secret(), "DB_SECRET_FILE": str(secret_file)})
    assert any("DB_SECRET_FILE" in p for p in problems)


def test_an_unreadable_name_file_is_named(tmp_path: Path) -> None:
    environ = {**FAMILIES["PG*"], "PGPASSWORD_FILE": str(tmp_path / "absent")}
    del environ["PGPASSWORD"]
    (problem,) = problems_of(environ)
    assert "PGPASSWORD_FILE" in problem


# --- engine -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("engine", "expected"),
    [
        ("postgres", "postgres"),
        ("aurora-postgresql", "postgres"),
        ("mysql", "mysql"),
        ("aurora-mysql", "mysql"),
        ("mariadb", "mysql"),
        ("tidb", "mysql"),
    ],
)
def test_engine_from_the_secret(engine: str, expected: str) -> None:
    assert load_ok({"DB_SECRET": secret(engine=engine, port=None)}).engine == expected


def test_cloudboot_engine_wins_over_the_secret_family_and_port() -> None:
    assert load_ok({"DB_SECRET": secret(), "CLOUDBOOT_ENGINE": "mysql"}).engine == "mysql"
    pg_on_3306 = {**FAMILIES["PG*"], "PGPORT": "3306"}
    assert load_ok(pg_on_3306).engine == "postgres"  # the family beats the port
    assert load_ok({**pg_on_3306, "CLOUDBOOT_ENGINE": "mysql"}).engine == "mysql"


def test_the_secret_engine_wins_over_the_port() -> None:
    assert load_ok({"DB_SECRET": secret(engine="mysql", port=5432)}).engine == "mysql"


@pytest.mark.parametrize(
    ("port", "expected"), [(5432, "postgres"), (3306, "mysql"), (4000, "mysql")]
)
def test_engine_from_the_port(port: int, expected: str) -> None:
    assert load_ok({"DB_SECRET": secret(engine=None, port=port)}).engine == expected
    family = {**FAMILIES["DB_*"], "DB_PORT": str(port)}
    assert load_ok(family).engine == expected


def test_an_engine_nothing_tells_is_an_error_naming_the_setting() -> None:
    (problem,) = problems_of({"DB_SECRET": secret(engine=None, port=6000)})
    assert "CLOUDBOOT_ENGINE" in problem
    assert "DB_SECRET" in problem
    (problem,) = problems_of(dict(FAMILIES["DB_*"]))
    assert "CLOUDBOOT_ENGINE" in problem


# --- bad input --------------------------------------------------------------------------


def test_not_json_names_the_variable() -> None:
    (problem,) = problems_of({"DB_SECRET": '{"host": "h", "password": "' + OTHER_PASSWORD})
    assert "DB_SECRET" in problem
    assert "JSON" in problem


def test_a_json_array_names_the_variable() -> None:
    (problem,) = problems_of({"CLOUDBOOT_SECRET_ENV": "DB_SECRET", "DB_SECRET": "[1, 2]"})
    assert "DB_SECRET" in problem
    assert "array" in problem


@pytest.mark.parametrize("field", ["username", "password"])
def test_a_candidate_without_username_or_password_names_it(field: str) -> None:
    (problem,) = problems_of({"DB_SECRET": secret(**{field: None})})
    assert "DB_SECRET" in problem
    assert field in problem


@pytest.mark.parametrize("port", ["fivefourthreetwo", "54x32", True, 5432.5, "-1", 70000, "٥٤٣٢"])
def test_a_port_that_is_not_a_number(port: object) -> None:
    (problem,) = problems_of({"DB_SECRET": secret(port=port)})
    assert "DB_SECRET" in problem
    assert "port" in problem
    assert "fivefourthreetwo" not in problem


def test_an_unknown_engine_names_the_field_and_the_known_ones() -> None:
    problems = problems_of({"DB_SECRET": secret(engine="oracle-ee")})
    assert any("'engine'" in p and "DB_SECRET" in p for p in problems)
    assert not any("oracle-ee" in p for p in problems)


@pytest.mark.parametrize("field", ["host", "dbname", "username", "password"])
@pytest.mark.parametrize("bad", ["\r", "\n", "\0"])
def test_cr_lf_nul_in_any_value(field: str, bad: str) -> None:
    value = f"before{bad}after-{OTHER_PASSWORD}"
    (problem,) = problems_of({"DB_SECRET": secret(**{field: value})})
    assert "DB_SECRET" in problem
    assert field in problem
    assert "after" not in problem


def test_a_missing_database_name_is_an_error_for_every_source() -> None:
    (problem,) = problems_of({"DB_SECRET": secret(dbname=None)})
    assert "dbname" in problem
    family = {k: v for k, v in FAMILIES["PG*"].items() if k != "PGDATABASE"}
    (problem,) = problems_of(family)
    assert "PGDATABASE" in problem
    (problem,) = problems_of({"DATABASE_URL": "postgresql://u:p@h:5432/"})
    assert "DATABASE_URL" in problem


def test_nothing_at_all_says_where_credentials_may_come_from() -> None:
    (problem,) = problems_of({})
    for hint in ("_SECRET", "CLOUDBOOT_SECRET_ENV", "DATABASE_URL"):
        assert hint in problem


def test_every_problem_in_settings_and_credentials_at_once() -> None:
    environ = {
        "DB_SECRET": secret(port="nope", password=None, engine="db2"),
        "CLOUDBOOT_SSLMODE": "sometimes",
        "CLOUDBOOT_WAIT_TIMEOUT": "soon",
    }
    problems = problems_of(environ)
    joined = "\n".join(problems)
    for expected in (
        "'port'",
        "'password'",
        "'engine'",
        "CLOUDBOOT_SSLMODE",
        "CLOUDBOOT_WAIT_TIMEOUT",
    ):
        assert expected in joined
    assert "sometimes" not in joined
    assert "soon" not in joined
