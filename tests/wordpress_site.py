"""WordPress sites laid out as the wordpress image's two targets lay them out, and the
clients that drive them: for ``test_image_wordpress.py``.

The official image (the default target) keeps WordPress in ``/usr/src/wordpress`` (the
*source*) and serves ``/var/www/html`` (the *site*, its volume, empty on a fresh one).
Its entrypoint copies the source into an empty site and writes a ``wp-config.php`` of
its own only when there is none: :func:`make_source` builds the source,
:func:`official_bin` the stand-ins for the image's ``docker-entrypoint.sh`` and
``apache2-foreground`` (``tests/wordpress_entrypoint.sh`` and ``php -S``), found on
``PATH`` as the image's ``CMD`` names them.

The Bitnami target keeps WordPress's code in ``/opt/bitnami/wordpress`` (the *base*) and
the site's state, ``wp-config.php`` and ``wp-content``, on the volume
``/bitnami/wordpress``, which Bitnami's entrypoint links into the base. ``php -S`` cannot
follow that dance, so there the served folder is the site: the base's code (hard links,
nothing is copied twice) where the volume's two entries land, as they would after
Bitnami's links. cloudboot writes ``wp-config.php`` there, and the image's
``seed-wp-content`` hook copies ``wp-content`` there from the base.

Debian's ``/usr/share/wordpress`` is the source of the base; it is not self-contained
(symbolic links into other Debian packages, and a ``wp-config.php`` of Debian's own that
reads ``/etc/wordpress`` and points ``WP_CONTENT_DIR`` at ``/var/lib/wordpress``), so
the base is a copy with the links resolved and that file left out.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from leakguard import assert_no_secret
from readers import WORDPRESS_DIR, reader, run, wordpress_sample

# Not needed by an English site and a third of the tree; Apache-only.
_LEFT_OUT = {
    WORDPRESS_DIR: {"wp-config.php", ".htaccess"},
    WORDPRESS_DIR / "wp-content": {"languages"},
}

PROBE = """<?php
// What the running WordPress's own database connection is: TLS or not, and with which
// settings (never the password).
require __DIR__ . '/wp-load.php';
global $wpdb;
$status = array();
foreach ( $wpdb->get_results( "SHOW SESSION STATUS LIKE 'Ssl_%'", ARRAY_N ) as $row ) {
    $status[ $row[0] ] = $row[1];
}
header( 'Content-Type: application/json' );
echo json_encode( array(
    'ssl_cipher'  => $status['Ssl_cipher'] ?? '',
    'ssl_version' => $status['Ssl_version'] ?? '',
    'flags'       => MYSQL_CLIENT_FLAGS,
    'verify_flag' => MYSQLI_CLIENT_SSL_VERIFY_SERVER_CERT,
    'db_host'     => DB_HOST,
    'charset'     => $wpdb->charset,
    'collate'     => $wpdb->collate,
    'blogname'    => get_option( 'blogname' ),
    'offline'     => defined( 'WP_HTTP_BLOCK_EXTERNAL' ) && WP_HTTP_BLOCK_EXTERNAL,
) );
"""
"""A page dropped into the site; it reports on WordPress's ``$wpdb`` connection."""

OFFLINE = """<?php
// Prepended to every request of the test's php -S: WordPress may call its own site
// (the installer does) but nothing else, such as api.wordpress.org from wp-cron.
define( 'WP_HTTP_BLOCK_EXTERNAL', true );
"""
"""``auto_prepend_file`` of the test's ``php -S``: keeps the tests off the network."""

# Connects as WordPress does (the constants of wp-config.php, MYSQL_CLIENT_FLAGS) from
# the command line, so that the CA can be changed through SSL_CERT_FILE per run.
_CONNECT = r"""
define('ABSPATH', getenv('STUB_ABSPATH') . '/');
require getenv('WP_CONFIG');
[$host, $port] = explode(':', DB_HOST);
$db = mysqli_init();
try {
    mysqli_real_connect($db, $host, DB_USER, DB_PASSWORD, DB_NAME, (int) $port, null,
        MYSQL_CLIENT_FLAGS);
    echo "connected\n";
} catch (mysqli_sql_exception $e) {
    echo 'refused ', $e->getCode(), "\n";
}
"""


def _ignore(folder: str, names: list[str]) -> set[str]:
    return _LEFT_OUT.get(Path(folder), set()) & set(names)


def copy_base(dest: Path) -> Path:
    """A self-contained copy of Debian's WordPress at ``dest`` (the image's
    ``/opt/bitnami/wordpress``): symbolic links resolved, no ``wp-config.php``."""
    wordpress_sample()  # fails, naming the Debian package, when WordPress is missing
    shutil.copytree(WORDPRESS_DIR, dest, symlinks=False, ignore=_ignore)
    assert not (dest / "wp-config.php").exists()
    assert (dest / "wp-content" / "themes").is_dir()
    return dest


def make_site(base: Path, dest: Path) -> Path:
    """The served folder: ``base``'s code as hard links, without ``wp-content`` (the
    hook brings it) or ``wp-config.php`` (cloudboot writes it); plus :data:`PROBE` as
    ``cloudboot-probe.php``."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        return {"wp-content"} & set(names) if Path(folder) == base else set()

    # Hard links are safe: WordPress never writes its own code, and cloudboot replaces
    # wp-config.php by a rename, never in place.
    shutil.copytree(base, dest, copy_function=os.link, ignore=ignore)
    (dest / "cloudboot-probe.php").write_text(PROBE)
    return dest


ENTRYPOINT_STANDIN = Path(__file__).resolve().parent / "wordpress_entrypoint.sh"

DOCKER_CONFIG = """<?php
// Stand-in for the official image's /usr/src/wordpress/wp-config-docker.php, which its
// entrypoint copies to wp-config.php when that is missing or empty. A site that reaches
// this line was configured by the entrypoint, not by cloudboot.
http_response_code( 500 );
die( 'wp-config-docker.php stand-in: put your unique phrase here' );
"""

_APACHE_STANDIN = """#!/bin/sh
# Stand-in for the official image's apache2-foreground: PHP's own server on the working
# folder (the image's /var/www/html), kept off the network.
exec php -d "auto_prepend_file=$STANDIN_PREPEND" -S "$STANDIN_LISTEN" -t "$PWD"
"""


def make_source(dest: Path) -> Path:
    """The official image's ``/usr/src/wordpress`` at ``dest``: Debian's WordPress
    (:func:`copy_base`) with the image's ``wp-config-docker.php`` (:data:`DOCKER_CONFIG`)
    and :data:`PROBE` as ``cloudboot-probe.php``, which the entrypoint copies along."""
    copy_base(dest)
    (dest / "wp-config-docker.php").write_text(DOCKER_CONFIG)
    (dest / "cloudboot-probe.php").write_text(PROBE)
    return dest


def official_bin(dest: Path) -> Path:
    """A folder for the front of ``PATH`` holding ``docker-entrypoint.sh`` and
    ``apache2-foreground``, the two programs the official image's ``CMD`` names; the
    second reads ``STANDIN_LISTEN`` and ``STANDIN_PREPEND``."""
    dest.mkdir(parents=True)
    shutil.copy(ENTRYPOINT_STANDIN, dest / "docker-entrypoint.sh")
    (dest / "apache2-foreground").write_text(_APACHE_STANDIN)
    for name in ("docker-entrypoint.sh", "apache2-foreground"):
        (dest / name).chmod(0o755)
    return dest


def install_form(title: str, admin_user: str, admin_password: str) -> dict[str, str]:
    """The fields of ``wp-admin/install.php?step=2``."""
    return {
        "weblog_title": title,
        "user_name": admin_user,
        "admin_password": admin_password,
        "admin_password2": admin_password,
        "pw_weak": "1",
        "admin_email": f"{admin_user}@example.com",
        "blog_public": "0",
    }


def php_connects(wp_config: Path, ca_file: Path, *, home: Path) -> str:
    """``connected`` or ``refused CODE``: whether PHP's mysqli, configured only by
    ``wp_config``'s constants, logs in when OpenSSL's default store is ``ca_file``."""
    stub = home / "abspath-stub"
    stub.mkdir(exist_ok=True)
    (stub / "wp-settings.php").write_text("<?php\n")
    result = run(
        [reader("php"), "-r", _CONNECT],
        home=home,
        env={"STUB_ABSPATH": str(stub), "WP_CONFIG": str(wp_config), "SSL_CERT_FILE": str(ca_file)},
    )
    assert_no_secret(result.stdout + result.stderr)
    assert result.returncode == 0, f"php failed: {result.stdout}\n{result.stderr}"
    return result.stdout.strip()
