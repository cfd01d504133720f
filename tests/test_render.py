"""The artifacts rendered in memory and written: exact text of each file and URL, the
rules of FORMATS.md that need no reader to check, modes, owner, atomic all-or-nothing
writes, and secrets that never show through a repr.

The real readers prove the same artifacts in ``test_readers_*``, ``test_wp_config`` and
``test_ecto_url``.
"""

from __future__ import annotations

import grp
import os
import pickle
import pwd
import stat
from pathlib import Path

import pytest

from bootstrap import (
    ConfigError,
    FileArtifact,
    Secret,
    Target,
    WriteError,
    load,
    plan,
    render,
    write,
)
from bootstrap.rendering import (
    render_my_cnf,
    render_pg_service,
    render_pgpass,
    render_wp_config,
    wp_constants,
)
from bootstrap.wpconfig import KEYS as WP_KEYS
from bootstrap.wpconfig import PLACEHOLDER as WP_PLACEHOLDER
from factories import rds_secret, rendered, unit_target, url_for

CA = "/etc/ssl/certs/rds global-bundle.pem"
PASSWORD = "p@ss:w/rd?#%+ 'q\"\\$`é"


def credentials(**changes: object) -> Target:
    fields: dict[str, object] = {
        "engine": "postgres",
        "host": "db.internal",
        "port": 5432,
        "dbname": "app",
        "user": "appuser",
        "password": Secret(PASSWORD),
        "ca_file": CA,
    }
    fields.update(changes)
    return unit_target(**fields)


def secret_env(home: Path, **fields: object) -> dict[str, str]:
    """A secret as in :func:`credentials`, and a CA file that exists (load checks it)."""
    ca_file = home / "ca dir" / "rds global-bundle.pem"
    ca_file.parent.mkdir(exist_ok=True)
    ca_file.write_text("a CA bundle\n")
    secret = rds_secret(host="db.internal", username="appuser", password=PASSWORD, **fields)
    return {"HOME": str(home), "DB_SECRET": secret, "CLOUDBOOT_CA_FILE": str(ca_file)}


# --- URLs -------------------------------------------------------------------------------

ENCODED_PASSWORD = "p%40ss%3Aw%2Frd%3F%23%25%2B%20%27q%22%5C%24%60%C3%A9"


@pytest.mark.parametrize(
    ("scheme", "sslmode", "query"),
    [
        (
            "postgresql",
            "verify-full",
            "sslmode=verify-full&sslrootcert=/etc/ssl/certs/rds%20global-bundle.pem",
        ),
        (
            "postgres",
            "verify-ca",
            "sslmode=verify-ca&sslrootcert=/etc/ssl/certs/rds%20global-bundle.pem",
        ),
        ("postgresql", "require", "sslmode=require"),
        ("postgresql", "disable", "sslmode=disable"),
        ("ecto", "verify-full", "ssl=true"),
        ("ecto", "require", "ssl=true"),
        ("ecto", "disable", ""),
        (
            "mysql",
            "verify-full",
            "ssl-mode=VERIFY_IDENTITY&ssl-ca=/etc/ssl/certs/rds%20global-bundle.pem",
        ),
        ("mysql", "verify-ca", "ssl-mode=VERIFY_CA&ssl-ca=/etc/ssl/certs/rds%20global-bundle.pem"),
        ("mysql", "require", "ssl-mode=REQUIRED"),
        ("mysql", "disable", "ssl-mode=DISABLED"),
        ("mysql+pymysql", "verify-full", "ssl_ca=/etc/ssl/certs/rds%20global-bundle.pem"),
        (
            "mysql+pymysql",
            "verify-ca",
            "ssl_ca=/etc/ssl/certs/rds%20global-bundle.pem&ssl_check_hostname=false",
        ),
        ("mysql+pymysql", "require", "ssl_check_hostname=false"),
        # PyMySQL tries TLS unless told not to (and falls back to plaintext): say so.
        ("mysql+pymysql", "disable", "ssl_disabled=true"),
    ],
)
def test_url_in_each_scheme_and_tls_mode(scheme: str, sslmode: str, query: str) -> None:
    ca = None if sslmode in ("require", "disable") else CA
    engine = "mysql" if scheme.startswith("mysql") else "postgres"
    password, encoded = PASSWORD, ENCODED_PASSWORD
    if scheme == "mysql+pymysql":  # PyMySQL sends Latin-1: only an ASCII password is allowed
        password, encoded = PASSWORD.replace("é", "e"), ENCODED_PASSWORD.replace("%C3%A9", "e")
    target = credentials(sslmode=sslmode, ca_file=ca, engine=engine, password=Secret(password))
    url = url_for(target, scheme)
    expected = f"{scheme}://appuser:{encoded}@db.internal:5432/app"
    assert url == expected + (f"?{query}" if query else "")


def test_url_encodes_every_byte_outside_unreserved_and_brackets_ipv6() -> None:
    printable = "".join(chr(c) for c in range(0x20, 0x7F))
    found = credentials(
        host="fd00::1",
        user=printable,
        dbname="my db+x",
        password=Secret(" "),
        sslmode="disable",
        ca_file=None,
    )
    url = url_for(found, "postgresql")
    user = url.split("://", 1)[1].split(":", 1)[0]
    unreserved = "-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"
    assert user == "".join(c if c in unreserved else f"%{ord(c):02X}" for c in printable)
    assert url.endswith(":%20@[fd00::1]:5432/my%20db%2Bx?sslmode=disable")


def test_the_environment_by_engine_and_settings(tmp_path: Path) -> None:
    config, rendering = rendered(secret_env(tmp_path))
    assert rendering.environment == {
        "DATABASE_URL": url_for(config.target, "postgresql"),
        "PGPASSFILE": str(tmp_path / ".pgpass"),
        "PGSERVICEFILE": str(tmp_path / ".pg_service.conf"),
    }
    assert rendering.secret_variables == frozenset({"DATABASE_URL"})
    environ = {**secret_env(tmp_path, engine="mysql", port=3306), "CLOUDBOOT_URL_ENV": "DB_URL"}
    _, rendering = rendered(environ)
    assert list(rendering.environment) == ["DB_URL"]
    assert rendering.environment["DB_URL"].startswith("mysql://")
    assert rendering.files == ()  # nothing for MySQL unless asked for


def test_system_ca_resolves_to_a_real_path(tmp_path: Path) -> None:
    environ = secret_env(tmp_path)
    environ["CLOUDBOOT_CA_FILE"] = "system"
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("a CA bundle\n")
    environ["SSL_CERT_FILE"] = str(bundle)
    _, rendering = rendered(environ)
    service = next(f for f in rendering.files if f.kind == "pg_service")
    assert f"sslrootcert={bundle}\n" in service.content.decode()
    del environ["SSL_CERT_FILE"]
    _, rendering = rendered(environ)
    service = next(f for f in rendering.files if f.kind == "pg_service")
    line = next(x for x in service.content.decode().splitlines() if x.startswith("sslrootcert="))
    assert Path(line.removeprefix("sslrootcert=")).is_file()


# --- libpq files --------------------------------------------------------------------------


def test_pgpass_escapes_backslash_and_colon_in_every_field() -> None:
    found = credentials(host="::1", dbname="d:b\\", user="u\\:")
    assert render_pgpass(found) == ("\\:\\:1:5432:d\\:b\\\\:u\\\\\\::p@ss\\:w/rd?#%+ 'q\"\\\\$`é\n")


def test_service_file_has_no_password_and_points_at_the_passfile() -> None:
    text, problems = render_pg_service(credentials(), name="app", passfile="/h/.pgpass")
    assert problems == []
    assert text == (
        "[app]\nhost=db.internal\nport=5432\ndbname=app\nuser=appuser\n"
        f"sslmode=verify-full\nsslrootcert={CA}\npassfile=/h/.pgpass\n"
    )
    assert PASSWORD not in text


def test_service_file_refuses_what_it_cannot_hold() -> None:
    _, problems = render_pg_service(
        credentials(user=" padded", dbname="x" * 1100, sslmode="require", ca_file=None),
        name="app",
        passfile=None,
    )
    assert len(problems) == 2
    assert any("user" in p and "white space" in p for p in problems)
    assert any("dbname" in p and "too long" in p for p in problems)
    assert not any(" padded" in p or "xxxx" in p for p in problems)


def test_render_files_for_postgres_with_modes(tmp_path: Path) -> None:
    environ = {**secret_env(tmp_path), "CLOUDBOOT_PROFILE": str(tmp_path / "app.profile")}
    config, rendering = rendered(environ)
    found = config.target
    by_kind = {f.kind: f for f in rendering.files}
    assert set(by_kind) == {"pgpass", "pg_service", "profile"}
    assert all(f.mode == 0o600 for f in rendering.files)
    assert by_kind["pgpass"].path == tmp_path / ".pgpass"
    assert by_kind["pgpass"].content == render_pgpass(found).encode()
    assert f"passfile={tmp_path / '.pgpass'}\n".encode() in by_kind["pg_service"].content
    assert by_kind["profile"].content.decode().splitlines() == [
        f"export DATABASE_URL='{rendering.environment['DATABASE_URL']}'",
        f"export PGPASSFILE='{tmp_path / '.pgpass'}'",
        f"export PGSERVICEFILE='{tmp_path / '.pg_service.conf'}'",
    ]


def test_an_empty_path_turns_an_artifact_off(tmp_path: Path) -> None:
    environ = {**secret_env(tmp_path), "CLOUDBOOT_PGPASS": "", "CLOUDBOOT_PG_SERVICE_NAME": "db"}
    _, rendering = rendered(environ)
    assert [f.kind for f in rendering.files] == ["pg_service"]
    assert "PGPASSFILE" not in rendering.environment
    text = rendering.files[0].content.decode()
    assert text.startswith("[db]\n")
    assert "passfile" not in text


# --- MySQL option file --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sslmode", "tls_lines"),
    [
        ("verify-full", ["ssl", "ssl-verify-server-cert"]),
        ("verify-ca", ["ssl", "ssl-verify-server-cert"]),
        ("require", ["ssl"]),
        ("disable", ["skip-ssl"]),
    ],
)
def test_my_cnf(sslmode: str, tls_lines: list[str]) -> None:
    ca = CA if sslmode.startswith("verify") else None
    text = render_my_cnf(
        credentials(engine="mysql", port=3306, dbname='d"b', sslmode=sslmode, ca_file=ca)
    )
    client = [
        "[client]",
        'user="appuser"',
        'password="p@ss:w/rd?#%+ \'q\\"\\\\$`é"',
        'host="db.internal"',
        'port="3306"',
        'protocol="TCP"',
    ]
    client += [f'ssl-ca="{CA}"'] if ca else []
    assert text.splitlines() == [
        *client,
        "",
        "[client-mariadb]",
        *tls_lines,
        "",
        "[mysql]",
        'database="d\\"b"',
    ]


# --- wp-config.php ------------------------------------------------------------------------

TEMPLATE = """<?php
// a comment: define( 'DB_NAME', 'not this one' );
define( 'DB_NAME', 'database_name_here' );
define('DB_USER',   'username_here');
  define( 'DB_PASSWORD', 'indented, and not managed here' );
define( 'AUTH_KEY',         'put your unique phrase here' );
define( 'NONCE_SALT',       'already set by hand' );
$table_prefix = 'wp_';
"""


def test_wp_config_rewrites_only_the_define_lines_keeping_padding() -> None:
    constants = {"DB_NAME": "'app'", "DB_USER": "'u\\'s'", "MYSQL_CLIENT_FLAGS": "0"}
    text = render_wp_config(TEMPLATE, constants, salt={"AUTH_KEY": "fresh-key"})
    assert text.splitlines(keepends=True) == [
        "<?php\n",
        "// a comment: define( 'DB_NAME', 'not this one' );\n",
        "define( 'DB_NAME', 'app' );\n",
        "define( 'DB_USER',   'u\\'s' );\n",
        "define( 'MYSQL_CLIENT_FLAGS', 0 );\n",
        "  define( 'DB_PASSWORD', 'indented, and not managed here' );\n",
        "define( 'AUTH_KEY',         'fresh-key' );\n",
        "define( 'NONCE_SALT',       'already set by hand' );\n",
        "$table_prefix = 'wp_';\n",
    ]
    assert render_wp_config(text, constants) == text


def test_wp_config_keeps_crlf_line_endings() -> None:
    template = TEMPLATE.replace("\n", "\r\n")
    text = render_wp_config(template, {"DB_NAME": "'app'", "DB_HOST": "'h:1'"})
    assert text.count("\r\n") == text.count("\n") == TEMPLATE.count("\n") + 1
    assert "define( 'DB_HOST', 'h:1' );\r\n" in text


def test_wp_config_splits_lines_at_lf_only_as_php_does() -> None:
    # str.splitlines would cut this define at U+2028 and leave "b...' );" dangling.
    template = "<?php\ndefine( 'DB_PASSWORD', 'a\u2028b\x0cc\x1cd' );\n// keep\x0bme\n"
    assert render_wp_config(template, {"DB_PASSWORD": "'new'"}) == (
        "<?php\ndefine( 'DB_PASSWORD', 'new' );\n// keep\x0bme\n"
    )


def test_wp_config_fresh_salts_from_the_sample() -> None:
    sample = TEMPLATE.replace("'already set by hand'", f"'{WP_PLACEHOLDER}'")
    first = render_wp_config(sample, {})
    second = render_wp_config(sample, {})
    assert WP_PLACEHOLDER not in first
    assert first != second  # random each time the sample is used
    assert render_wp_config(first, {}) == first  # but never replaced once set
    assert len(WP_KEYS) == 8


@pytest.mark.parametrize(
    ("sslmode", "flags"),
    [
        ("verify-full", "MYSQLI_CLIENT_SSL | MYSQLI_CLIENT_SSL_VERIFY_SERVER_CERT"),
        ("verify-ca", "MYSQLI_CLIENT_SSL | MYSQLI_CLIENT_SSL_VERIFY_SERVER_CERT"),
        ("require", "MYSQLI_CLIENT_SSL"),
        ("disable", "0"),
    ],
)
def test_wp_constants(sslmode: str, flags: str) -> None:
    constants = wp_constants(
        credentials(engine="mysql", host="localhost", port=3306, sslmode=sslmode), collate="x"
    )
    assert constants == {
        "DB_NAME": "'app'",
        "DB_USER": "'appuser'",
        "DB_PASSWORD": "'p@ss:w/rd?#%+ \\'q\"\\\\$`é'",
        "DB_HOST": "'127.0.0.1:3306'",  # mysqli takes localhost for the socket
        "DB_CHARSET": "'utf8mb4'",
        "DB_COLLATE": "'x'",
        "MYSQL_CLIENT_FLAGS": flags,
    }


def test_wp_config_without_sample_is_a_config_error_naming_the_path(tmp_path: Path) -> None:
    environ = {
        **secret_env(tmp_path, engine="mysql"),
        "CLOUDBOOT_WP_CONFIG": str(tmp_path / "wp" / "wp-config.php"),
    }
    config = load(environ)
    with pytest.raises(ConfigError) as caught:
        render(config)
    (problem,) = caught.value.problems
    assert "CLOUDBOOT_WP_CONFIG" in problem
    assert "wp-config-sample.php" in problem


def test_wp_collate_with_a_line_break_is_refused(tmp_path: Path) -> None:
    (tmp_path / "wp-config-sample.php").write_text(TEMPLATE)
    environ = {
        **secret_env(tmp_path, engine="mysql"),
        "CLOUDBOOT_WP_CONFIG": str(tmp_path / "wp-config.php"),
        "CLOUDBOOT_WP_COLLATE": "utf8mb4_bin\n);",
    }
    with pytest.raises(ConfigError, match="CLOUDBOOT_WP_COLLATE"):
        load(environ)


# --- writing ------------------------------------------------------------------------------


def artifact(path: Path, content: bytes, mode: int = 0o600, *, keep: bool = False) -> FileArtifact:
    return FileArtifact("test", path, content, mode, keep_existing_mode=keep)


def test_plan_create_update_unchanged_and_write(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file"
    (first,) = plan([artifact(target, b"one")])
    assert (first.action, first.mode) == ("create", 0o600)
    write([first])
    assert target.read_bytes() == b"one"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    mtime = target.stat().st_mtime_ns
    (again,) = plan([artifact(target, b"one")])
    assert again.action == "unchanged"
    write([again])
    assert target.stat().st_mtime_ns == mtime
    target.chmod(0o644)  # same bytes, wrong mode: fixed
    (mode_only,) = plan([artifact(target, b"one")])
    assert mode_only.action == "update"
    write([mode_only])
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    (changed,) = plan([artifact(target, b"two")])
    assert changed.action == "update"
    write([changed])
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file"]  # no temporary left


def test_an_existing_file_keeps_its_mode_and_owner_when_asked(tmp_path: Path) -> None:
    target = tmp_path / "wp-config.php"
    target.write_bytes(b"old")
    target.chmod(0o604)
    nobody = pwd.getpwnam("nobody")
    os.chown(target, nobody.pw_uid, nobody.pw_gid)
    # A file of another user is trusted when that user is the configured owner (the
    # official WordPress image: www-data's wp-config.php, cloudboot running as root).
    owner = (nobody.pw_uid, nobody.pw_gid)
    (item,) = plan([artifact(target, b"new", 0o640, keep=True)], owner)
    assert (item.action, item.mode) == ("update", 0o604)
    write([item], owner=owner)
    info = target.stat()
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(info.st_mode) == 0o604
    assert (info.st_uid, info.st_gid) == (nobody.pw_uid, nobody.pw_gid)


def test_a_file_of_an_untrusted_user_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "wp-config.php"
    target.write_bytes(b"planted")
    nobody = pwd.getpwnam("nobody")
    os.chown(target, nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(WriteError, match="uid 65534") as caught:
        plan([artifact(target, b"new", 0o640, keep=True)])
    assert caught.value.exit_code == 73
    assert target.read_bytes() == b"planted"


def test_owner_applies_to_new_files(tmp_path: Path) -> None:
    environ = {**secret_env(tmp_path), "CLOUDBOOT_OWNER": "nobody:nogroup"}
    owner = load(environ).owner
    nobody = pwd.getpwnam("nobody")
    assert owner == (nobody.pw_uid, grp.getgrnam("nogroup").gr_gid)
    target = tmp_path / "profile"
    write(plan([artifact(target, b"x")]), owner=owner)
    assert target.stat().st_uid == nobody.pw_uid
    with pytest.raises(ConfigError, match="CLOUDBOOT_OWNER"):
        load({**environ, "CLOUDBOOT_OWNER": "no-such-user-here"})


def test_write_is_all_or_nothing(tmp_path: Path) -> None:
    good = tmp_path / "good"
    blocker = tmp_path / "not-a-dir"
    planned = plan([artifact(good, b"good"), artifact(blocker / "bad", b"bad")])
    blocker.write_text("a file where a folder should be")  # after the plan: write fails
    with pytest.raises(WriteError) as caught:
        write(planned)
    assert caught.value.exit_code == 73
    assert "bad" in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-dir"]


# --- secrets never show -------------------------------------------------------------------


def test_secret_shows_as_secret_everywhere() -> None:
    value = Secret(PASSWORD)
    for shown in (repr(value), str(value), f"{value}", f"{value!r}", f"{value:>40}", "%s" % value):  # noqa: UP031
        assert shown.strip() == "<SECRET>"
    assert value.reveal() == PASSWORD
    assert value == Secret(PASSWORD)
    assert value != PASSWORD
    with pytest.raises(TypeError):
        pickle.dumps(value)


def test_credentials_repr_has_no_password() -> None:
    found = credentials()
    for shown in (repr(found), str(found), f"{found}", repr([found]), repr({"c": found})):
        assert PASSWORD not in shown
        assert "<SECRET>" in shown
