"""``wp-config.php`` can never expose the password or silently keep old credentials.

Each form a hand-edited or generated file may take is rendered by cloudboot and then
loaded by PHP itself (errors on, to stderr): a form cloudboot can rewrite exactly must
load with no warning and give every database constant its new value; any other form is
refused with 78, naming the constant and the line, and the file is left byte for byte.
For every form, the page ``php -S`` serves for ``/wp-config.php`` never holds the
password.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootproc import call
from factories import rds_secret
from readers import clean_env, failure, php_read_wp_config, reader, wordpress_sample
from servers import NASTY_PASSWORDS, free_port

PASSWORD = NASTY_PASSWORDS[7]  # "?><?php echo 1; // */ -- #": closes tags and comments
OLD = "old-password-1234"

# The constants as the DB_* lines of WordPress's own sample write them.
DB_LINES = (
    """define( 'DB_NAME', 'old_db' );
define( 'DB_USER', 'old_user' );
define( 'DB_PASSWORD', '"""
    + OLD
    + """' );
define( 'DB_HOST', 'old-host:3306' );
define( 'DB_CHARSET', 'utf8' );
define( 'DB_COLLATE', '' );
"""
)
TAIL = """$table_prefix = 'wp_';
if ( ! defined( 'ABSPATH' ) ) {
\tdefine( 'ABSPATH', __DIR__ . '/' );
}
require_once ABSPATH . 'wp-settings.php';
"""

ACCEPTED: dict[str, bytes] = {
    "WordPress's own layout": ("<?php\n" + DB_LINES + TAIL).encode(),
    "a comment after the statement is kept": (
        "<?php\n" + DB_LINES.replace("'old_db' );", "'old_db' ); // the shop's database") + TAIL
    ).encode(),
    "bytes that are not UTF-8 elsewhere are kept": (
        b"<?php\n// caf\xe9 in Latin-1, \xff\xfe\n" + DB_LINES.encode() + TAIL.encode()
    ),
    "the docker image's getenv_docker lines": (
        "<?php\n"
        "function getenv_docker($env, $default) { return getenv($env) ?: $default; }\n"
        + DB_LINES.replace("'old_db'", "getenv_docker('WORDPRESS_DB_NAME', 'wordpress')")
        + TAIL
    ).encode(),
    "an indented define inside one condition": (
        "<?php\nif ( true ) {\n    define( 'DB_NAME', 'old_db' );\n}\n"
        + DB_LINES.split("\n", 1)[1]
        + TAIL
    ).encode(),
    "a commented-out old define next to the real one": (
        "<?php\n/* define( 'DB_PASSWORD', 'older' ); */\n" + DB_LINES + TAIL
    ).encode(),
    "constants missing, added inside the code": (
        "<?php\n$table_prefix = 'wp_';\n" + TAIL.split("\n", 1)[1]
    ).encode(),
    "a closing tag after the code": ("<?php\n" + DB_LINES + TAIL + "?>\n").encode(),
    "an upper-case tag, two constants missing": (
        "<?PHP\n" + DB_LINES.split("\n", 2)[2] + TAIL
    ).encode(),
    "an empty file is a missing one": b"",
}

REFUSED: dict[str, tuple[bytes, str, int]] = {
    # name: (the file, the constant named, the line named)
    "on the <?php line": (
        ("<?php define( 'DB_NAME', 'old_db' );\n" + DB_LINES.split("\n", 1)[1] + TAIL).encode(),
        "DB_NAME",
        1,
    ),
    "with double quotes": (
        (
            "<?php\n"
            + DB_LINES.replace(
                "define( 'DB_USER', 'old_user' );", 'define( "DB_USER", "old_user" );'
            )
            + TAIL
        ).encode(),
        "DB_USER",
        3,
    ),
    "across several lines": (
        (
            "<?php\n"
            + DB_LINES.replace(
                "define( 'DB_PASSWORD', '" + OLD + "' );",
                "define(\n  'DB_PASSWORD',\n  '" + OLD + "'\n);",
            )
            + TAIL
        ).encode(),
        "DB_PASSWORD",
        4,
    ),
    "with a heredoc": (
        (
            "<?php\n"
            + DB_LINES.replace(
                "define( 'DB_HOST', 'old-host:3306' );",
                "define( 'DB_HOST', <<<EOT\nold-host:3306\nEOT );",
            )
            + TAIL
        ).encode(),
        "DB_HOST",
        5,
    ),
    "inside a comment block only": (
        ("<?php\n/*\n" + DB_LINES + "*/\n" + TAIL).encode(),
        "DB_NAME",
        3,
    ),
    "conditionally twice": (
        (
            "<?php\nif ( getenv('STAGING') ) {\n  define( 'DB_PASSWORD', 'staging-pw' );\n"
            "} else {\n  define( 'DB_PASSWORD', '"
            + OLD
            + "' );\n}\n"
            + DB_LINES.replace("define( 'DB_PASSWORD', '" + OLD + "' );\n", "")
            + TAIL
        ).encode(),
        "DB_PASSWORD",
        3,
    ),
    "no <?php at all": (b"<html><body>not PHP</body></html>\n", "<?php", 0),
}


def _environ(folder: Path, home: Path) -> dict[str, str]:
    return {
        "HOME": str(home),
        "DB_SECRET": rds_secret(engine="mysql", port=3306, host="db.internal", password=PASSWORD),
        "CLOUDBOOT_WP_CONFIG": str(folder / "wp-config.php"),
        "CLOUDBOOT_CA_FILE": "system",
    }


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    (site / "wp-config-sample.php").write_bytes(wordpress_sample().read_bytes())
    (site / "wp-settings.php").write_text("<?php\n")
    return site


@contextlib.contextmanager
def served(folder: Path, home: Path) -> Iterator[str]:
    """``php -S`` on ``folder``; the base URL."""
    port = free_port()
    process = subprocess.Popen(
        [reader("php"), "-S", f"127.0.0.1:{port}", "-t", str(folder)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=clean_env(home),
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            assert time.monotonic() < deadline, "php -S did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait()


def page(base: str) -> bytes:
    try:
        with urllib.request.urlopen(f"{base}/wp-config.php", timeout=10) as response:  # noqa: S310 - loopback
            body: bytes = response.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    return body


def _assert_page_has_no_password(folder: Path, home: Path) -> None:
    with served(folder, home) as base:
        body = page(base)
    for form in (PASSWORD, PASSWORD.replace("'", "\\'"), OLD):
        assert form.encode() not in body


@pytest.mark.parametrize("form", list(ACCEPTED))
def test_accepted_forms_load_in_php_with_the_new_values(
    form: str, folder: Path, home: Path
) -> None:
    wp_config = folder / "wp-config.php"
    wp_config.write_bytes(ACCEPTED[form])
    result = call(["render"], _environ(folder, home))
    assert result.returncode == 0, result
    written = wp_config.read_bytes()
    read = php_read_wp_config(wp_config, home=home)  # fails on any PHP warning
    constants = read["constants"]
    assert constants["DB_PASSWORD"] == PASSWORD
    assert constants["DB_NAME"] == "app"
    assert constants["DB_USER"] == "appuser"
    assert constants["DB_HOST"] == "db.internal:3306"
    assert constants["DB_CHARSET"] == "utf8mb4"
    assert constants["DB_COLLATE"] == "utf8mb4_bin"
    assert OLD.encode() not in written
    if form == "bytes that are not UTF-8 elsewhere are kept":
        assert b"// caf\xe9 in Latin-1, \xff\xfe\n" in written
    if form == "a comment after the statement is kept":
        assert b"define( 'DB_NAME', 'app' ); // the shop's database\n" in written
    # A second run changes nothing.
    again = call(["render"], _environ(folder, home))
    assert again.returncode == 0, again
    assert wp_config.read_bytes() == written
    _assert_page_has_no_password(folder, home)


@pytest.mark.parametrize("form", list(REFUSED))
def test_other_forms_are_refused_naming_the_constant_and_line(
    form: str, folder: Path, home: Path
) -> None:
    wp_config = folder / "wp-config.php"
    content, constant, line = REFUSED[form]
    wp_config.write_bytes(content)
    before = wp_config.stat()
    result = call(["render"], _environ(folder, home))
    assert result.returncode == 78, result
    problems = "\n".join(failure(result)["problems"])
    assert constant in problems
    if line:
        assert f"line {line}" in problems or f"lines {line}" in problems, problems
    assert PASSWORD not in result.stderr
    assert wp_config.read_bytes() == content
    assert wp_config.stat().st_mtime_ns == before.st_mtime_ns
    _assert_page_has_no_password(folder, home)
