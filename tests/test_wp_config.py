"""PHP reads the ``wp-config.php`` cloudboot renders and gets back exactly the values
given; the file is made from Debian's real ``wp-config-sample.php`` (package
``wordpress``) with fresh keys and salts, an existing file keeps every other line, its
mode and its owner, and a second run changes nothing. PHP's mysqli, connecting as
WordPress does with these constants, proves what ``MYSQL_CLIENT_FLAGS`` really checks.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootproc import run as cloudboot
from bootstrap import plan, write
from bootstrap.wpconfig import KEYS as WP_KEYS
from bootstrap.wpconfig import PLACEHOLDER as WP_PLACEHOLDER
from factories import rds_secret, rendered
from readers import describe, php_mysqli_connect, php_read_wp_config, wordpress_sample
from servers import HOST, MISMATCH_HOST, NASTY_PASSWORDS, MariaDBServer, mysql_literal

IDS = [f"password{index}" for index in range(len(NASTY_PASSWORDS))]
MYSQLI_CLIENT_SSL = 2048
MYSQLI_CLIENT_SSL_VERIFY_SERVER_CERT = 1073741824
DB_CONSTANTS = ("DB_NAME", "DB_USER", "DB_PASSWORD", "DB_HOST", "DB_CHARSET", "DB_COLLATE")


def wp_dir(home: Path) -> Path:
    """A WordPress folder holding only Debian's sample (Debian's own wp-config.php, a
    loader for /etc/wordpress, is not copied)."""
    folder = home / "html"
    folder.mkdir()
    shutil.copy(wordpress_sample(), folder / "wp-config-sample.php")
    return folder


def secret_env(
    folder: Path,
    password: str,
    *,
    host: str = "db.internal",
    port: int = 3306,
    user: str = "wp_user",
    dbname: str = "wordpress",
    **settings: str,
) -> dict[str, str]:
    secret = rds_secret(
        host=host, port=port, dbname=dbname, username=user, password=password, engine="mysql"
    )
    return {
        "DB_SECRET": secret,
        "CLOUDBOOT_WP_CONFIG": str(folder / "wp-config.php"),
        "CLOUDBOOT_CA_FILE": "/etc/ssl/certs/ca-certificates.crt",
        **settings,
    }


def render_in_process(environ: dict[str, str], home: Path) -> None:
    """load → render → plan → write through the library, as ``cloudboot render`` does."""
    environ = {**environ, "HOME": str(home)}
    config, rendering = rendered(environ)
    write(plan(rendering.files), config.owner)


@pytest.mark.parametrize("index", range(len(NASTY_PASSWORDS)), ids=IDS)
def test_php_reads_back_exactly_the_values_given(home: Path, index: int) -> None:
    folder = wp_dir(home)
    password = NASTY_PASSWORDS[index]
    user = f"wp'user\\{index}\"$x"
    dbname = "wp:db?#\\'é"
    render_in_process(secret_env(folder, password, user=user, dbname=dbname), home)
    constants = php_read_wp_config(folder / "wp-config.php", home=home)["constants"]
    assert {name: constants[name] for name in DB_CONSTANTS} == {
        "DB_NAME": dbname,
        "DB_USER": user,
        "DB_PASSWORD": password,
        "DB_HOST": "db.internal:3306",
        "DB_CHARSET": "utf8mb4",
        "DB_COLLATE": "utf8mb4_bin",
    }


def test_created_from_debians_sample_by_cloudboot_render(home: Path) -> None:
    folder = wp_dir(home)
    sample = (folder / "wp-config-sample.php").read_text()
    env = secret_env(folder, NASTY_PASSWORDS[0])
    result = cloudboot(["render"], env, home=home)
    assert result.returncode == 0, describe(result)
    wp_config = folder / "wp-config.php"
    assert stat.S_IMODE(wp_config.stat().st_mode) == 0o640

    read = php_read_wp_config(wp_config, home=home)
    constants = read["constants"]
    assert constants["DB_PASSWORD"] == NASTY_PASSWORDS[0]
    assert constants["MYSQL_CLIENT_FLAGS"] == (
        MYSQLI_CLIENT_SSL | MYSQLI_CLIENT_SSL_VERIFY_SERVER_CERT
    )
    assert constants["MYSQL_CLIENT_FLAGS"] == 1073743872
    assert read["table_prefix"] == "wp_"
    assert constants["WP_DEBUG"] is False
    salts = [constants[key] for key in WP_KEYS]
    assert len(set(salts)) == 8
    assert all(isinstance(s, str) and len(s) == 64 for s in salts)
    text = wp_config.read_text()
    assert WP_PLACEHOLDER not in text

    # Every line of the sample that is not a database constant, a key or a salt is kept
    # byte for byte and in order; the one added line is MYSQL_CLIENT_FLAGS.
    rewritten = (*DB_CONSTANTS, *WP_KEYS)

    def kept(lines: list[str]) -> list[str]:
        return [x for x in lines if not any(f"define( '{n}'," in x for n in rewritten)]

    new_lines = text.splitlines(keepends=True)
    added = [x for x in kept(new_lines) if x not in sample.splitlines(keepends=True)]
    flags = "MYSQLI_CLIENT_SSL | MYSQLI_CLIENT_SSL_VERIFY_SERVER_CERT"
    assert added == [f"define( 'MYSQL_CLIENT_FLAGS', {flags} );\n"]
    assert [x for x in kept(new_lines) if x not in added] == kept(sample.splitlines(keepends=True))
    # WordPress's installer pattern still finds each constant once, padding kept.
    for key in WP_KEYS:
        assert sum(x.startswith(f"define( '{key}',") for x in new_lines) == 1
    assert "define( 'SECURE_AUTH_SALT', '" in text
    assert "define( 'AUTH_KEY',         '" in text


def test_a_second_run_changes_nothing(home: Path) -> None:
    folder = wp_dir(home)
    env = secret_env(folder, NASTY_PASSWORDS[3])
    assert cloudboot(["render"], env, home=home).returncode == 0
    wp_config = folder / "wp-config.php"
    before = wp_config.read_bytes()
    mtime = wp_config.stat().st_mtime_ns
    result = cloudboot(["render", "--json"], env, home=home)
    assert result.returncode == 0, describe(result)
    rows = json.loads(result.stdout)["artifacts"]
    (row,) = [r for r in rows if r.get("kind") == "wp_config"]
    assert (row["action"], row["mode"]) == ("unchanged", "0640")
    assert wp_config.read_bytes() == before
    assert wp_config.stat().st_mtime_ns == mtime


EXISTING = (
    "<?php\r\n"
    "// Hand-made, CRLF line endings, tabs and a closing tag.\r\n"
    "define('DB_NAME', 'old_db'); \r\n"
    "define(\t'DB_USER',\t'old_user' );\r\n"
    "define( 'DB_PASSWORD', 'old password' );\r\n"
    "define( 'DB_HOST', 'localhost' );\r\n"
    "define( 'AUTH_KEY', 'hand-chosen key that must stay' );\r\n"
    "define( 'NONCE_SALT',       'put your unique phrase here' );\r\n"
    "$table_prefix = 'custom_';\r\n"
    "define( 'WP_HOME', 'https://example.org' );\r\n"
    "/* That's all, stop editing! */\r\n"
    "if ( ! defined( 'ABSPATH' ) ) { define( 'ABSPATH', __DIR__ . '/' ); }\r\n"
    "require_once ABSPATH . 'wp-settings.php';\r\n"
)


def test_an_existing_file_keeps_other_lines_mode_and_owner(home: Path) -> None:
    folder = wp_dir(home)
    wp_config = folder / "wp-config.php"
    wp_config.write_text(EXISTING, newline="")
    wp_config.chmod(0o604)
    nobody = pwd.getpwnam("nobody")
    os.chown(wp_config, nobody.pw_uid, nobody.pw_gid)
    # The file is nobody's, and nobody is the configured owner (as www-data in the
    # official image): trusted, and it keeps its owner and mode.
    env = secret_env(folder, NASTY_PASSWORDS[7], host="::1", port=3310, CLOUDBOOT_OWNER="nobody")
    result = cloudboot(["render"], env, home=home)
    assert result.returncode == 0, describe(result)

    info = wp_config.stat()
    assert stat.S_IMODE(info.st_mode) == 0o604
    assert (info.st_uid, info.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    old = EXISTING.splitlines(keepends=True)
    new = wp_config.read_bytes().decode().splitlines(keepends=True)
    # Lines 0-1 and 6 (a key already set) and 8-12 are untouched; the rest rewritten in place.
    for index in (0, 1, 6, 8, 9, 10, 11, 12):
        assert old[index] in new
    assert all(line.endswith("\r\n") for line in new)
    assert new[new.index(old[6]) + 1].startswith("define( 'NONCE_SALT',       '")
    read = php_read_wp_config(wp_config, home=home)
    constants = read["constants"]
    assert constants["DB_PASSWORD"] == NASTY_PASSWORDS[7]
    assert constants["DB_HOST"] == "[::1]:3310"
    assert constants["AUTH_KEY"] == "hand-chosen key that must stay"
    assert len(constants["NONCE_SALT"]) == 64
    assert read["table_prefix"] == "custom_"
    # A second run: nothing to do.
    before = wp_config.read_bytes()
    result = cloudboot(["render"], env, home=home)
    assert result.returncode == 0, describe(result)
    assert "unchanged" in result.stdout
    assert wp_config.read_bytes() == before


@pytest.mark.parametrize(
    ("sslmode", "flags"),
    [
        ("verify-full", 1073743872),
        ("verify-ca", 1073743872),
        ("require", MYSQLI_CLIENT_SSL),
        ("disable", 0),
    ],
)
def test_mysql_client_flags_by_tls_mode(home: Path, sslmode: str, flags: int) -> None:
    folder = wp_dir(home)
    render_in_process(secret_env(folder, "pw", CLOUDBOOT_SSLMODE=sslmode), home)
    assert (
        php_read_wp_config(folder / "wp-config.php", home=home)["constants"]["MYSQL_CLIENT_FLAGS"]
        == flags
    )


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("db.internal", 3306, "db.internal:3306"),
        ("10.0.0.5", 4000, "10.0.0.5:4000"),
        ("::1", 3306, "[::1]:3306"),
        ("localhost", 3307, "127.0.0.1:3307"),  # mysqli would take localhost as the socket
    ],
)
def test_db_host(home: Path, host: str, port: int, expected: str) -> None:
    folder = wp_dir(home)
    render_in_process(secret_env(folder, "pw", host=host, port=port), home)
    assert (
        php_read_wp_config(folder / "wp-config.php", home=home)["constants"]["DB_HOST"] == expected
    )


def test_db_collate_is_configurable(home: Path) -> None:
    folder = wp_dir(home)
    render_in_process(secret_env(folder, "pw", CLOUDBOOT_WP_COLLATE="utf8mb4_unicode_ci"), home)
    constants = php_read_wp_config(folder / "wp-config.php", home=home)["constants"]
    assert constants["DB_COLLATE"] == "utf8mb4_unicode_ci"


# --- mysqli, as WordPress connects ---------------------------------------------------------


@pytest.fixture(scope="module")
def wp_account(mariadb_server: MariaDBServer) -> Iterator[tuple[str, str]]:
    """An account and database on the shared server, dropped after the module."""
    user, password = "cb_wordpress", NASTY_PASSWORDS[0]
    mariadb_server.admin_sql(
        "CREATE DATABASE `cb_wordpress`;\n"
        f"CREATE USER {mysql_literal(user)}@'%' IDENTIFIED BY {mysql_literal(password)};\n"
        f"GRANT ALL PRIVILEGES ON `cb_wordpress`.* TO {mysql_literal(user)}@'%';\n",
        redact=(password, mysql_literal(password)),
    )
    yield user, password
    mariadb_server.admin_sql(
        f"DROP USER IF EXISTS {mysql_literal(user)}@'%';\n"
        "DROP DATABASE IF EXISTS `cb_wordpress`;\n"
        "FLUSH PRIVILEGES;\n"  # see test_readers_mysql: back to 1130 for unknown hosts
    )


def test_mysqli_connects_with_the_constants_and_verifies_only_when_told(
    mariadb_server: MariaDBServer, wp_account: tuple[str, str], home: Path
) -> None:
    user, password = wp_account
    folder = wp_dir(home)
    wp_config = folder / "wp-config.php"
    trust_test_ca = {"SSL_CERT_FILE": str(mariadb_server.ca_file)}
    trust_other_ca = {"SSL_CERT_FILE": str(mariadb_server.certs.other_ca_file)}

    def connect(sslmode: str, host: str, trust: dict[str, str]) -> dict[str, object]:
        env = secret_env(
            folder,
            password,
            host=host,
            port=mariadb_server.port,
            user=user,
            dbname="cb_wordpress",
            CLOUDBOOT_SSLMODE=sslmode,
        )
        render_in_process(env, home)
        return php_mysqli_connect(wp_config, home=home, env=trust)

    # verify-full: logs in over TLS trusting the right CA (OpenSSL's default store, as
    # SSL_CERT_FILE points it), and refuses a certificate the store does not trust.
    ok = connect("verify-full", HOST, trust_test_ca)
    assert ok.get("user") == f"{user}@%", ok
    assert ok["cipher"]
    refused = connect("verify-full", HOST, trust_other_ca)
    assert "error" in refused, refused
    # MYSQLI_CLIENT_SSL alone (require) encrypts but accepts any certificate: this is why
    # verify-* modes must add MYSQLI_CLIENT_SSL_VERIFY_SERVER_CERT.
    unchecked = connect("require", HOST, trust_other_ca)
    assert unchecked.get("user") == f"{user}@%", unchecked
    assert unchecked["cipher"]
    # The verifying flag checks the host name too.
    mismatch = connect("verify-full", MISMATCH_HOST, trust_test_ca)
    assert "error" in mismatch, mismatch
