"""The wordpress image, first boot and second boot, end to end on this machine.

What runs is the image's: its ``ENTRYPOINT`` (``cloudboot``) and its ``cloudboot.toml``,
with only the paths moved onto a local copy of Debian's WordPress by the variables the
image's README lists. ``php -S`` stands in for Bitnami's nginx + PHP-FPM. The database
is a throwaway MariaDB that refuses plaintext; the database does not exist yet and there
is no ``wp-config.php``: the first boot of a fresh deployment. The credentials arrive as
Copilot gives them, as the JSON ``DB_SECRET`` of an Aurora addon or as the tutorial's
SSM parameters ``WORDPRESS_DATABASE_*``.
"""

from __future__ import annotations

import json
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from imagerun import IMAGES, Task, Tasks, entrypoint, http_get, http_post, wait_http
from leakguard import assert_no_secret, register_secret
from readers import cloudboot, describe, reader, run
from servers import (
    HOST,
    NASTY_PASSWORDS,
    SECRET_PASSWORD,
    Certificates,
    MariaDBServer,
    free_port,
    mysql_literal,
    unique_name,
)
from wordpress_site import OFFLINE, copy_base, install_form, make_site, php_connects

TOML = IMAGES / "wordpress" / "cloudboot.toml"
COLLATION = "utf8mb4_bin"
PHP_PASSWORD = "?><?php echo 1; // */ -- #"
assert PHP_PASSWORD in NASTY_PASSWORDS


@pytest.fixture(scope="module")
def wordpress_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's ``/opt/bitnami/wordpress``: WordPress's code and its ``wp-content``."""
    return copy_base(tmp_path_factory.mktemp("image") / "wordpress")


@dataclass(frozen=True)
class Deployment:
    """One WordPress service: its database login, its folders, the task environment."""

    style: str
    server: MariaDBServer
    user: str
    dbname: str
    site: Path
    home: Path
    port: int
    environ: dict[str, str]

    @property
    def wp_config(self) -> Path:
        return self.site / "wp-config.php"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def server_cmd(self) -> list[str]:
        """In place of the image's CMD (Bitnami's entrypoint and nginx + PHP-FPM): PHP's
        own server, kept off the network (:data:`wordpress_site.OFFLINE`)."""
        offline = self.site.parent / "offline.php"
        offline.write_text(OFFLINE)
        return [
            reader("php"),
            "-d",
            f"auto_prepend_file={offline}",
            "-S",
            f"{HOST}:{self.port}",
            "-t",
            str(self.site),
        ]

    def boot(self, tasks: Tasks, name: str) -> Task:
        """The container starting: ENTRYPOINT + CMD; returns once the server answers."""
        task = tasks.start(
            name, [*entrypoint("wordpress"), *self.server_cmd()], self.environ, home=self.home
        )
        wait_http(f"{self.url}/wp-login.php", task)
        return task

    def sql(self, query: str, dbname: str | None = None) -> list[list[str]]:
        """Rows of ``query`` run by the server's admin (not through WordPress)."""
        output = self.server.admin_sql(query, dbname)
        return [line.split("\t") for line in output.splitlines()]


def credentials(style: str, server: MariaDBServer, user: str, dbname: str) -> dict[str, str]:
    """The variables Copilot injects, in one of its two styles."""
    if style == "DB_SECRET":
        # The Secrets Manager RDS layout of Copilot's Aurora MySQL addon. "localhost" is
        # in the server certificate; WordPress must still be sent over TCP.
        secret = {
            "dbClusterIdentifier": "wordpress-aurora-cluster",
            "engine": "mysql",
            "host": "localhost",
            "port": server.port,
            "username": user,
            "password": SECRET_PASSWORD,
            "dbname": dbname,
        }
        return {"DB_SECRET": json.dumps(secret)}
    # The tutorial's SSM parameters, each its own variable (the port as a string).
    return {
        "WORDPRESS_DATABASE_HOST": HOST,
        "WORDPRESS_DATABASE_PORT_NUMBER": str(server.port),
        "WORDPRESS_DATABASE_NAME": dbname,
        "WORDPRESS_DATABASE_USER": user,
        "WORDPRESS_DATABASE_PASSWORD": PHP_PASSWORD,
    }


@pytest.fixture(params=["DB_SECRET", "WORDPRESS_DATABASE"])
def deployment(
    request: pytest.FixtureRequest,
    mariadb_server: MariaDBServer,
    wordpress_base: Path,
    tmp_path: Path,
    home: Path,
) -> Deployment:
    style: str = request.param
    user, dbname = unique_name("wp"), unique_name("wordpress")
    password = SECRET_PASSWORD if style == "DB_SECRET" else PHP_PASSWORD
    mariadb_server.create_user(user, password)
    site = make_site(wordpress_base, tmp_path / "site")
    environ = {
        **credentials(style, mariadb_server, user, dbname),
        # The image's /etc/cloudboot.toml, with its paths moved by variables only.
        "CLOUDBOOT_CONFIG": str(TOML),
        "CLOUDBOOT_WP_CONFIG": str(site / "wp-config.php"),
        "CLOUDBOOT_WP_CONFIG_SAMPLE": str(wordpress_base / "wp-config-sample.php"),
        "CLOUDBOOT_MY_CNF": str(home / ".my.cnf"),
        "WORDPRESS_BASE_DIR": str(wordpress_base),
        "WORDPRESS_VOLUME_DIR": str(site),
        # The system store, for cloudboot's ca_file = "system" and for PHP's OpenSSL.
        "SSL_CERT_FILE": str(mariadb_server.ca_file),
        "CLOUDBOOT_LOG_FORMAT": "json",
        # The installer requests its own site while it runs: one worker would wait 10 s.
        "PHP_CLI_SERVER_WORKERS": "4",
    }
    return Deployment(style, mariadb_server, user, dbname, site, home, free_port(), environ)


def test_first_boot_installs_wordpress_and_second_boot_changes_nothing(
    deployment: Deployment, tasks: Tasks, certs: Certificates
) -> None:
    d = deployment
    assert not d.server.database_exists(d.dbname)
    assert not d.wp_config.exists()
    assert not (d.site / "wp-content").exists()

    first = d.boot(tasks, "first-boot")
    check_first_boot(d, first)

    # Not installed yet: WordPress sends every page to its installer.
    status, url, _ = http_get(f"{d.url}/")
    assert (status, url) == (200, f"{d.url}/wp-admin/install.php"), url
    title = f"Cloudboot Ünïcødé 🥾 blog {secrets.token_hex(4)}"
    admin_password = register_secret(secrets.token_urlsafe(16))
    status, body = http_post(
        f"{d.url}/wp-admin/install.php?step=2", install_form(title, "admin", admin_password)
    )
    assert status == 200
    assert "<h1>Success!</h1>" in body, body[-3000:]

    check_collations(d)
    check_front_page(d, title)
    check_connection_is_verified_tls(d, certs, title)
    check_mariadb_client(d)
    tasks.stop([first])
    first.check_output()

    check_second_boot(d, tasks, title)


def check_first_boot(d: Deployment, task: Task) -> None:
    """cloudboot created the database and wp-config.php, seeded wp-content, and became
    the PHP server."""
    assert task.event("cloudboot.exec")["pid"] == task.pid
    assert Path(task.program()).name.startswith("php"), task.program()
    task.event("cloudboot.database.created", dbname=d.dbname)
    task.event("cloudboot.hook.done", hook="seed-wp-content")
    created = task.event("cloudboot.render.file", kind="wp_config")
    assert (created["action"], created["mode"]) == ("create", "0640")
    assert stat.S_IMODE(d.wp_config.stat().st_mode) == 0o640
    config = d.wp_config.read_text()
    assert "define( 'DB_COLLATE', 'utf8mb4_bin' );" in config
    assert "put your unique phrase here" not in config
    assert (d.site / "wp-content" / "themes" / "twentytwentythree" / "theme.json").is_file()

    where = f"SCHEMA_NAME = {mysql_literal(d.dbname)}"
    schema = d.sql(
        "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "  # noqa: S608 - literal
        f"FROM information_schema.SCHEMATA WHERE {where};"
    )
    assert schema == [["utf8mb4", COLLATION]]


def check_collations(d: Deployment) -> None:
    """Every table WordPress's installer created, and every text column, is
    ``utf8mb4_bin``: WordPress took ``DB_COLLATE`` from cloudboot's wp-config.php."""
    where = f"TABLE_SCHEMA = {mysql_literal(d.dbname)}"
    tables = dict(
        d.sql(f"SELECT TABLE_NAME, TABLE_COLLATION FROM information_schema.TABLES WHERE {where};")  # noqa: S608
    )
    assert len(tables) >= 12, tables
    assert "wp_options" in tables
    assert set(tables.values()) == {COLLATION}, tables
    columns = d.sql(
        "SELECT DISTINCT COLLATION_NAME FROM information_schema.COLUMNS "  # noqa: S608 - literal
        f"WHERE {where} AND COLLATION_NAME IS NOT NULL;"
    )
    assert columns == [[COLLATION]]


def check_front_page(d: Deployment, title: str) -> None:
    status, url, body = http_get(f"{d.url}/")
    assert (status, url) == (200, f"{d.url}/")
    assert title in body, body[:2000]


def check_connection_is_verified_tls(d: Deployment, certs: Certificates, title: str) -> None:
    """WordPress's own connection is TLS with certificate verification: the server
    refuses plaintext anyway (the install wrote its rows), and the PHP side asked for
    verification and fails against another CA."""
    stored = d.sql("SELECT option_value FROM wp_options WHERE option_name = 'blogname';", d.dbname)
    assert stored == [[title]]

    status, _, body = http_get(f"{d.url}/cloudboot-probe.php")
    assert status == 200, body
    probe = json.loads(body)
    assert probe["ssl_cipher"], probe
    assert probe["ssl_version"].startswith("TLSv1."), probe
    assert probe["flags"] & probe["verify_flag"], probe
    assert probe["offline"] is True
    assert probe["db_host"] == f"{HOST}:{d.server.port}"
    assert (probe["charset"], probe["collate"], probe["blogname"]) == ("utf8mb4", COLLATION, title)

    assert php_connects(d.wp_config, certs.ca_file, home=d.home) == "connected"
    refused = php_connects(d.wp_config, certs.other_ca_file, home=d.home)
    assert refused.startswith("refused"), refused


def check_mariadb_client(d: Deployment) -> None:
    """An operator's plain ``mariadb`` (``copilot svc exec``) connects through the
    image's ``~/.my.cnf``, TLS verified against the CA written there.

    Only with a real host name or address: with host ``localhost`` (the DB_SECRET case
    here) the client takes the Unix socket, which ~/.my.cnf does not prevent (reported;
    ``cloudboot mysql`` adds ``protocol=TCP`` for itself).
    """
    result = run(
        [reader("mariadb"), "--batch", "--skip-column-names", "-e",
         "SELECT DATABASE(), CURRENT_USER(); SHOW SESSION STATUS LIKE 'Ssl_cipher';"],
        home=d.home,
    )  # fmt: skip
    assert_no_secret(result.stdout + result.stderr)
    assert result.returncode == 0, describe(result)
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert rows[0] == [d.dbname, f"{d.user}@%"]
    assert rows[1][0] == "Ssl_cipher"
    assert rows[1][1], rows


def check_second_boot(d: Deployment, tasks: Tasks, title: str) -> None:
    """The task restarts: wp-config.php keeps every byte, the site is still installed."""
    before = d.wp_config.read_bytes()
    second = d.boot(tasks, "second-boot")
    assert d.wp_config.read_bytes() == before
    assert second.event("cloudboot.render.file", kind="wp_config")["action"] == "unchanged"
    assert second.event("cloudboot.wait.ready")["database_exists"] is True
    assert "cloudboot.database.created" not in second.event_names()
    check_front_page(d, title)
    tasks.stop([second])
    second.check_output()

    result = cloudboot(["render", "--json"], d.environ, home=d.home)
    assert result.returncode == 0, describe(result)
    files = [row for row in json.loads(result.stdout)["artifacts"] if "kind" in row]
    assert {row["kind"]: row["action"] for row in files} == {
        "wp_config": "unchanged",
        "my_cnf": "unchanged",
    }
    assert d.wp_config.read_bytes() == before
