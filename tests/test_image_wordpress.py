"""The wordpress image, first boot and second boot, end to end on this machine, for both
of its targets.

What runs is the image's: its ``ENTRYPOINT`` (``cloudboot``) and its ``cloudboot.toml``,
with only the paths moved onto local folders by the variables the image's README lists.
The database is a throwaway MariaDB that refuses plaintext; the database does not exist
yet and there is no ``wp-config.php``: the first boot of a fresh deployment.

- ``official`` (the default target, docker-library's Apache image): the image's ``CMD``
  as it is, ``docker-entrypoint.sh apache2-foreground``, found on ``PATH`` as stand-ins
  (``tests/wordpress_entrypoint.sh``, which copies WordPress into the empty site folder
  and writes its own ``wp-config.php`` only when there is none, and ``php -S``).
  Debian's WordPress is the image's ``/usr/src/wordpress``. The credentials arrive as
  the task definition gives them: ``WORDPRESS_DB_HOST``/``_NAME`` as variables,
  ``WORDPRESS_DB_USER``/``_PASSWORD`` from the RDS-managed secret's JSON keys.
- ``bitnami`` (frozen upstream): ``php -S`` stands in for Bitnami's entrypoint and
  nginx + PHP-FPM; the credentials arrive as Copilot gave them, the JSON ``DB_SECRET``
  of an Aurora addon or the tutorial's SSM parameters ``WORDPRESS_DATABASE_*``.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from bootproc import run as cloudboot
from imagerun import IMAGES, Task, Tasks, entrypoint, exec_form, http_get, http_post, wait_http
from leakguard import assert_no_secret, register_secret
from readers import describe, reader, run
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
from wordpress_site import (
    DOCKER_CONFIG,
    OFFLINE,
    copy_base,
    install_form,
    make_site,
    make_source,
    official_bin,
    php_connects,
)

DOCKERFILE = IMAGES / "wordpress" / "Dockerfile"
TOMLS = {
    "official": IMAGES / "wordpress" / "cloudboot.toml",
    "bitnami": IMAGES / "wordpress" / "bitnami" / "cloudboot.toml",
}
TARGETS = {"official": None, "bitnami": "bitnami"}
"""Dockerfile target per layout: the official image is the default (last) stage."""
OFFICIAL_CMD = ["docker-entrypoint.sh", "apache2-foreground"]
HEALTH_CHECK_PATH = "/wp-admin/install.php"
"""The Express service's health check: 200 before and after the installation."""
COLLATION = "utf8mb4_bin"
PHP_PASSWORD = "?><?php echo 1; // */ -- #"
assert PHP_PASSWORD in NASTY_PASSWORDS


@dataclass(frozen=True)
class ImageFiles:
    """What each target's image carries: Bitnami's ``/opt/bitnami/wordpress`` (the
    base: WordPress's code and its ``wp-content``) and the official image's
    ``/usr/src/wordpress`` (the source)."""

    base: Path
    source: Path


@pytest.fixture(scope="module")
def image_files(tmp_path_factory: pytest.TempPathFactory) -> ImageFiles:
    image = tmp_path_factory.mktemp("image")
    return ImageFiles(copy_base(image / "wordpress"), make_source(image / "usr-src-wordpress"))


@dataclass(frozen=True)
class Deployment:
    """One WordPress service: its image layout, database login, folders, environment."""

    layout: str
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

    def command(self) -> list[str]:
        """ENTRYPOINT + CMD. Official: the image's CMD word for word (the stand-ins are
        first on PATH). Bitnami: PHP's own server in place of Bitnami's entrypoint and
        nginx + PHP-FPM, kept off the network (:data:`wordpress_site.OFFLINE`)."""
        argv = entrypoint("wordpress", TARGETS[self.layout])
        cmd = exec_form(DOCKERFILE, "CMD", TARGETS[self.layout])
        if self.layout == "official":
            assert cmd == OFFICIAL_CMD, cmd
            return [*argv, *cmd]
        assert cmd[0] == "/opt/bitnami/scripts/wordpress/entrypoint.sh", cmd
        offline = self.site.parent / "offline.php"
        return [*argv, reader("php"), "-d", f"auto_prepend_file={offline}",
                "-S", f"{HOST}:{self.port}", "-t", str(self.site)]  # fmt: skip

    def boot(self, tasks: Tasks, name: str) -> Task:
        """The container starting: ENTRYPOINT + CMD; returns once the server answers.
        The official image's working folder is its site folder (its WORKDIR)."""
        cwd = self.site if self.layout == "official" else None
        task = tasks.start(name, self.command(), self.environ, home=self.home, cwd=cwd)
        wait_http(f"{self.url}{HEALTH_CHECK_PATH}", task)
        return task

    def sql(self, query: str, dbname: str | None = None) -> list[list[str]]:
        """Rows of ``query`` run by the server's admin (not through WordPress)."""
        output = self.server.admin_sql(query, dbname)
        return [line.split("\t") for line in output.splitlines()]


def credentials(style: str, server: MariaDBServer, user: str, dbname: str) -> dict[str, str]:
    """The variables the platform injects, in one of three styles."""
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
    if style == "WORDPRESS_DB":
        # The task definition's: host and name as variables, user and password as the
        # JSON keys of the RDS-managed secret (valueFrom ARN:username:: / ARN:password::).
        return {
            "WORDPRESS_DB_HOST": f"{HOST}:{server.port}",
            "WORDPRESS_DB_NAME": dbname,
            "WORDPRESS_DB_USER": user,
            "WORDPRESS_DB_PASSWORD": SECRET_PASSWORD,
        }
    # The tutorial's SSM parameters, each its own variable (the port as a string).
    return {
        "WORDPRESS_DATABASE_HOST": HOST,
        "WORDPRESS_DATABASE_PORT_NUMBER": str(server.port),
        "WORDPRESS_DATABASE_NAME": dbname,
        "WORDPRESS_DATABASE_USER": user,
        "WORDPRESS_DATABASE_PASSWORD": PHP_PASSWORD,
    }


def layout_environ(
    layout: str, files: ImageFiles, *, tmp_path: Path, home: Path, port: int
) -> tuple[Path, dict[str, str]]:
    """The site folder and the variables that move the image's paths onto this machine."""
    source, base = files.source, files.base
    if layout == "official":
        site = tmp_path / "var-www-html"
        site.mkdir()
        bin_dir = official_bin(tmp_path / "bin")
        offline = tmp_path / "offline.php"
        offline.write_text(OFFLINE)
        return site, {
            "CLOUDBOOT_WP_CONFIG": str(site / "wp-config.php"),
            "CLOUDBOOT_WP_CONFIG_SAMPLE": str(source / "wp-config-sample.php"),
            "WORDPRESS_SOURCE": str(source),
            "PATH": f"{bin_dir}:{os.environ.get('PATH') or '/usr/bin:/bin'}",
            "STANDIN_LISTEN": f"{HOST}:{port}",
            "STANDIN_PREPEND": str(offline),
        }
    site = make_site(base, tmp_path / "site")
    (tmp_path / "offline.php").write_text(OFFLINE)
    return site, {
        "CLOUDBOOT_WP_CONFIG": str(site / "wp-config.php"),
        "CLOUDBOOT_WP_CONFIG_SAMPLE": str(base / "wp-config-sample.php"),
        "CLOUDBOOT_MY_CNF": str(home / ".my.cnf"),
        "WORDPRESS_BASE_DIR": str(base),
        "WORDPRESS_VOLUME_DIR": str(site),
        # php -S stands in for Bitnami's entrypoint and nginx: it is the server here.
        "CLOUDBOOT_SERVER": reader("php"),
    }


LAYOUTS = [
    ("official", "WORDPRESS_DB"),
    ("bitnami", "DB_SECRET"),
    ("bitnami", "WORDPRESS_DATABASE"),
]


@pytest.fixture(params=LAYOUTS, ids="-".join)
def deployment(
    request: pytest.FixtureRequest,
    mariadb_server: MariaDBServer,
    image_files: ImageFiles,
    tmp_path: Path,
    home: Path,
) -> Deployment:
    layout, style = request.param
    user, dbname = unique_name("wp"), unique_name("wordpress")
    password = PHP_PASSWORD if style == "WORDPRESS_DATABASE" else SECRET_PASSWORD
    mariadb_server.create_user(user, password)
    port = free_port()
    site, paths = layout_environ(layout, image_files, tmp_path=tmp_path, home=home, port=port)
    environ = {
        **credentials(style, mariadb_server, user, dbname),
        # The image's /etc/cloudboot.toml, with its paths moved by variables only.
        "CLOUDBOOT_CONFIG": str(TOMLS[layout]),
        **paths,
        # The system store, for cloudboot's ca_file = "system" and for PHP's OpenSSL.
        "SSL_CERT_FILE": str(mariadb_server.ca_file),
        "CLOUDBOOT_LOG_FORMAT": "json",
        # The installer requests its own site while it runs: one worker would wait 10 s.
        "PHP_CLI_SERVER_WORKERS": "4",
    }
    return Deployment(layout, style, mariadb_server, user, dbname, site, home, port, environ)


def test_first_boot_installs_wordpress_and_second_boot_changes_nothing(
    deployment: Deployment, tasks: Tasks, certs: Certificates
) -> None:
    d = deployment
    assert not d.server.database_exists(d.dbname)
    assert not d.wp_config.exists()
    assert not (d.site / "wp-content").exists()

    first = d.boot(tasks, "first-boot")
    check_first_boot(d, first)
    if d.layout == "official":
        check_official_first_boot(d, first)
    else:
        check_bitnami_first_boot(d, first)
    # The Express service's health check answers 200 before the installation.
    assert http_get(f"{d.url}{HEALTH_CHECK_PATH}")[0] == 200

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
    # ... and after it (WordPress's "Already Installed" page).
    assert http_get(f"{d.url}{HEALTH_CHECK_PATH}")[0] == 200
    check_connection_is_verified_tls(d, certs, title)
    if d.layout == "bitnami":
        check_mariadb_client(d)
    tasks.stop([first])
    first.check_output()

    check_second_boot(d, tasks, title)


def check_first_boot(d: Deployment, task: Task) -> None:
    """cloudboot created the database and wp-config.php and became the PHP server."""
    assert task.event("cloudboot.exec")["pid"] == task.pid
    assert Path(task.program()).name.startswith("php"), task.program()
    task.event("cloudboot.database.created", dbname=d.dbname)
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


def check_official_first_boot(d: Deployment, task: Task) -> None:
    """The order on an empty volume: cloudboot wrote wp-config.php, then the official
    entrypoint copied WordPress in around it and, finding a non-empty wp-config.php,
    wrote none of its own; the file belongs to www-data, who serves it."""
    stderr = task.stderr()
    exec_line = next(i for i, e in enumerate(stderr.splitlines()) if '"cloudboot.exec"' in e)
    copy_line = stderr.splitlines().index(f"WordPress not found in {d.site} - copying now...")
    assert exec_line < copy_line, stderr
    assert f"Complete! WordPress has been successfully copied to {d.site}" in stderr
    assert "WARNING: " + str(d.site) + " is not empty! (copying anyhow)" in stderr
    assert "No 'wp-config.php' found" not in stderr
    assert "wp-config-docker.php stand-in" not in d.wp_config.read_text()
    assert (d.site / "wp-config-docker.php").read_text() == DOCKER_CONFIG
    assert (d.site / "wp-includes" / "version.php").is_file()
    www_data = pwd.getpwnam("www-data")
    owner = d.wp_config.stat()
    assert (owner.st_uid, owner.st_gid) == (www_data.pw_uid, www_data.pw_gid)
    assert (d.site / "index.php").stat().st_uid == www_data.pw_uid


def check_bitnami_first_boot(d: Deployment, task: Task) -> None:
    """The seed-wp-content hook copied the image's wp-content onto the volume."""
    task.event("cloudboot.hook.done", hook="seed-wp-content")


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
    """The task restarts: wp-config.php keeps every byte, the site is still installed,
    and the official entrypoint copies nothing."""
    before = d.wp_config.read_bytes()
    index_before = (d.site / "index.php").stat()
    second = d.boot(tasks, "second-boot")
    assert d.wp_config.read_bytes() == before
    index_after = (d.site / "index.php").stat()
    assert (index_after.st_ino, index_after.st_mtime_ns) == (
        index_before.st_ino,
        index_before.st_mtime_ns,
    )
    assert "WordPress not found" not in second.stderr()
    assert "No 'wp-config.php' found" not in second.stderr()
    assert second.event("cloudboot.render.file", kind="wp_config")["action"] == "unchanged"
    assert second.event("cloudboot.wait.ready")["database_exists"] is True
    assert "cloudboot.database.created" not in second.event_names()
    check_front_page(d, title)
    tasks.stop([second])
    second.check_output()

    result = cloudboot(["render", "--json"], d.environ, home=d.home)
    assert result.returncode == 0, describe(result)
    files = [row for row in json.loads(result.stdout)["artifacts"] if "kind" in row]
    expected = {"wp_config": "unchanged"}
    if d.layout == "bitnami":
        expected["my_cnf"] = "unchanged"
    assert {row["kind"]: row["action"] for row in files} == expected
    assert d.wp_config.read_bytes() == before


def test_the_official_entrypoint_stand_in_is_live(
    image_files: ImageFiles, tmp_path: Path, home: Path
) -> None:
    """Without cloudboot in front, the stand-in does what the official entrypoint does
    on an empty volume: copies WordPress in and writes wp-config.php from
    wp-config-docker.php. So the first-boot test's "wrote none of its own" means
    something: only cloudboot's earlier wp-config.php prevented it."""
    site = tmp_path / "var-www-html"
    site.mkdir()
    bin_dir = official_bin(tmp_path / "bin")
    # The server stand-in is replaced by one that only says it ran.
    (bin_dir / "apache2-foreground").write_text("#!/bin/sh\necho served\n")
    result = run(
        [str(bin_dir / "docker-entrypoint.sh"), "apache2-foreground"],
        home=home,
        cwd=site,
        env={
            "WORDPRESS_SOURCE": str(image_files.source),
            "WORDPRESS_DB_HOST": "db.example.com",
            "PATH": f"{bin_dir}:{os.environ.get('PATH') or '/usr/bin:/bin'}",
        },
    )
    assert result.returncode == 0, describe(result)
    assert result.stdout == "served\n"
    assert "No 'wp-config.php' found" in result.stderr
    config = (site / "wp-config.php").read_text()
    assert config.startswith(DOCKER_CONFIG.split("put your unique phrase here")[0])
    assert "put your unique phrase here" not in config
    assert (site / "index.php").is_file()
    # Any other command is exec'd at once: nothing copied, nothing written.
    other = tmp_path / "other"
    other.mkdir()
    result = run([str(bin_dir / "docker-entrypoint.sh"), "true"], home=home, cwd=other)
    assert result.returncode == 0, describe(result)
    assert list(other.iterdir()) == []
