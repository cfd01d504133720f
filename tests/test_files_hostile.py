"""Files and secrets that cannot be turned against their owner.

cloudboot runs as root here (as it often does in a container) and writes a password;
an unprivileged attacker (``runuser -u nobody``) prepares the folders it writes into.
In every case the attacker gets no byte of the secret, no root-owned file changes, and
cloudboot ends within seconds with 0 (written safely) or 73 (refused). A full disk is an
error with the old file byte for byte; a ``*_FILE`` that is a FIFO, a device or a folder
is refused at once; the SQL clients get no credential variable; the process holding the
password is not readable by another process of its user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from bootproc import call, run
from factories import rds_secret
from leakguard import spellings
from readers import clean_env, failure, wordpress_sample
from servers import SECRET_PASSWORD, free_port, wait_for

NOBODY = "nobody"
SRC = Path(__file__).resolve().parent.parent / "src"


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", NOBODY, "--", *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


@pytest.fixture
def playground() -> Iterator[Path]:
    """A 0755 folder outside pytest's private ones, which nobody can traverse: it holds
    a sticky, world-writable ``shared`` and a ``group`` folder that nobody's group may
    write, as a shared volume or a group-writable web root would be."""
    base = Path(tempfile.mkdtemp(prefix="cloudboot-attack-", dir="/tmp"))
    base.chmod(0o755)
    (base / "shared").mkdir()
    (base / "shared").chmod(0o1777)
    (base / "group").mkdir()
    os.chown(base / "group", 0, 65534)
    (base / "group").chmod(0o775)
    (base / "root-only").mkdir(mode=0o700)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def environ_writing(pgpass: Path, home: Path) -> dict[str, str]:
    """A PostgreSQL secret whose .pgpass goes to ``pgpass`` (no service file)."""
    return {
        "DB_SECRET": rds_secret(password=SECRET_PASSWORD, host="db.internal"),
        "CLOUDBOOT_PGPASS": str(pgpass),
        "CLOUDBOOT_PG_SERVICE_FILE": "",
        "CLOUDBOOT_LOG_FORMAT": "json",
        "HOME": str(home),
    }


def no_secret_in(*paths: Path) -> None:
    forms = spellings(SECRET_PASSWORD).values()
    for path in paths:
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            assert not any(form.encode() in data for form in forms), path


def render(env: dict[str, str], home: Path) -> tuple[int, str, float]:
    started = time.monotonic()
    result = run(["render"], env, home=home, timeout=30)
    return result.returncode, result.stderr, time.monotonic() - started


# --- temporary names nobody can pre-empt ---------------------------------------------


@pytest.mark.parametrize("folder", ["shared", "group-trusted"])
def test_pre_created_temporary_names_are_never_opened(
    playground: Path, home: Path, folder: str
) -> None:
    where = playground / "shared"
    if folder == "group-trusted":
        where = playground / "trusted-group"
        where.mkdir()
        where.chmod(0o2775)  # the group is root's: trusted
    target = where / ".pgpass"
    # The names a PID-derived scheme would use (cloudboot is PID 1 in a container),
    # as a regular file the attacker can read, and as a FIFO the attacker reads from.
    planted = [where / f".pgpass.cloudboot-{pid}" for pid in (1, 2, 7, 42)]
    readers: list[subprocess.Popen[bytes]] = []
    got = playground / "shared"
    for index, path in enumerate(planted):
        if index % 2:
            os.mkfifo(path, 0o666)
            out = got / f"{path.name}.got"
            readers.append(
                subprocess.Popen(
                    ["runuser", "-u", NOBODY, "--", "sh", "-c", f"timeout 3 cat {path} > {out}"],
                    stdin=subprocess.DEVNULL,
                )
            )
        else:
            path.write_text("attacker's\n")
            path.chmod(0o666)
    code, stderr, elapsed = render(environ_writing(target, home), home)
    assert code == 0, stderr
    assert elapsed < 10
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.stat().st_uid == 0
    for reader in readers:
        reader.wait(timeout=10)  # the FIFOs were never opened for writing: timeout ends cat
    for path in planted:
        if path.is_fifo():
            assert not (got / f"{path.name}.got").read_bytes()
        else:
            assert path.read_text() == "attacker's\n"
    no_secret_in(*(p for p in where.iterdir() if p != target))
    # Nothing of cloudboot's is left beside it.
    assert not [
        p
        for p in where.iterdir()
        if "cloudboot-" in p.name and p not in planted and "got" not in p.name
    ]


# --- links and files someone planted ---------------------------------------------------


def _plant_link(link: Path, points_to: Path) -> None:
    result = as_nobody("ln", "-s", str(points_to), str(link))
    assert result.returncode == 0, result.stderr


def test_a_link_another_user_planted_is_refused(playground: Path, home: Path) -> None:
    victim = playground / "root-only" / "victim"
    victim.write_text("root's own file\n")
    target = playground / "shared" / ".pgpass"
    _plant_link(target, victim)
    code, stderr, elapsed = render(environ_writing(target, home), home)
    assert code == 73, stderr
    assert elapsed < 10
    assert "link" in stderr
    assert victim.read_text() == "root's own file\n"
    assert target.is_symlink()
    no_secret_in(victim)


def test_a_dangling_link_is_refused_and_nothing_is_created_behind_it(
    playground: Path, home: Path
) -> None:
    behind = playground / "root-only" / "not-there"
    target = playground / "shared" / ".pgpass"
    _plant_link(target, behind)
    code, stderr, _ = render(environ_writing(target, home), home)
    assert code == 73, stderr
    assert not behind.exists()
    # A root-owned dangling link (no attacker) is refused as well: nothing behind it.
    os.unlink(target)
    target.symlink_to(behind)
    code, stderr, _ = render(environ_writing(target, home), home)
    assert code == 73, stderr
    assert "link to nothing" in stderr
    assert not behind.exists()


def test_a_planted_link_on_the_way_is_refused(playground: Path, home: Path) -> None:
    _plant_link(playground / "shared" / "app", playground / "root-only")
    target = playground / "shared" / "app" / ".pgpass"
    code, stderr, _ = render(environ_writing(target, home), home)
    assert code == 73, stderr
    assert list((playground / "root-only").iterdir()) == []


def test_a_file_another_user_created_first_is_refused(playground: Path, home: Path) -> None:
    target = playground / "shared" / ".pgpass"
    as_nobody("sh", "-c", f"echo mine > {target}")
    code, stderr, _ = render(environ_writing(target, home), home)
    assert code == 73, stderr
    assert "uid 65534" in stderr
    assert target.read_text() == "mine\n"


def test_a_folder_an_untrusted_group_may_write_is_refused(playground: Path, home: Path) -> None:
    target = playground / "group" / ".pgpass"
    code, stderr, _ = render(environ_writing(target, home), home)
    assert code == 73, stderr
    assert "group 65534" in stderr
    assert list((playground / "group").iterdir()) == []


def test_a_fifo_at_the_artifact_path_is_refused_without_hanging(
    playground: Path, home: Path
) -> None:
    target = playground / "root-only" / ".pgpass"
    os.mkfifo(target, 0o600)
    code, stderr, elapsed = render(environ_writing(target, home), home)
    assert code == 73, stderr
    assert "FIFO" in stderr
    assert elapsed < 10


def test_a_trusted_link_is_written_through(playground: Path, home: Path) -> None:
    # What Bitnami does: wp-config.php in the code folder links into the volume. Root
    # made both, in folders nobody else may write: the link is followed.
    volume = playground / "root-only" / "volume"
    volume.mkdir()
    (volume / ".pgpass").write_text("old\n")
    link = playground / "root-only" / "link"
    link.symlink_to(volume / ".pgpass")
    code, stderr, _ = render(environ_writing(link, home), home)
    assert code == 0, stderr
    assert link.is_symlink()
    assert "db.internal" in (volume / ".pgpass").read_text()


# --- a full disk --------------------------------------------------------------------------


@contextlib.contextmanager
def tiny_filesystem(path: Path) -> Iterator[Path]:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(path)],
                   check=True)  # fmt: skip
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(folder: Path) -> None:
    with contextlib.suppress(OSError), (folder / "filler").open("wb") as filler:
        while True:
            filler.write(b"\0" * 4096)
            filler.flush()
            os.fsync(filler.fileno())


def test_a_full_disk_is_73_and_the_old_file_stays(tmp_path: Path, home: Path) -> None:
    with tiny_filesystem(tmp_path / "disk") as disk:
        pgpass = disk / ".pgpass"
        pgpass.write_text("*:*:*:*:the-old-line\n")
        pgpass.chmod(0o600)
        site = disk / "site"
        site.mkdir()
        shutil.copy(wordpress_sample(), site / "wp-config-sample.php")
        wp_config = site / "wp-config.php"
        wp_config.write_bytes((site / "wp-config-sample.php").read_bytes())
        before = pgpass.read_bytes(), wp_config.read_bytes()
        _fill(disk)
        env = environ_writing(pgpass, home)
        code, stderr, _ = render(env, home)
        assert code == 73, stderr
        assert "No space left on device" in stderr
        mysql = {
            "DB_SECRET": rds_secret(password=SECRET_PASSWORD, engine="mysql", port=3306),
            "CLOUDBOOT_WP_CONFIG": str(wp_config),
            "CLOUDBOOT_LOG_FORMAT": "json",
        }
        code, stderr, _ = render(mysql, home)
        assert code == 73, stderr
        assert (pgpass.read_bytes(), wp_config.read_bytes()) == before
        assert sorted(p.name for p in disk.iterdir()) == [".pgpass", "filler", "site"]
        assert sorted(p.name for p in site.iterdir()) == ["wp-config-sample.php", "wp-config.php"]


# --- *_FILE is bounded ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "device", "folder", "huge"])
def test_a_name_file_that_is_not_a_small_regular_file_is_78_at_once(
    kind: str, tmp_path: Path, home: Path
) -> None:
    path = tmp_path / "password"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path = Path("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    else:
        path.write_bytes(b"x" * (1 << 20))
    env = {
        "PGHOST": "db.internal",
        "PGDATABASE": "app",
        "PGUSER": "app",
        "PGPASSWORD_FILE": str(path),
    }
    started = time.monotonic()
    result = call(["render", "--dry-run"], {**env, "HOME": str(home)})
    assert result.returncode == 78, result
    assert time.monotonic() - started < 1.0
    (problem,) = failure(result)["problems"]
    assert "PGPASSWORD_FILE" in problem


# --- the SQL clients get no credential ---------------------------------------------------

# A stand-in for psql / mariadb: writes its argv and environment where the test reads it
# (a path written into the script: the client's environment is cloudboot's allow-list).
DUMP = """#!/bin/sh
{{ printf '%s\\n' "$0" "$@"; env; }} > {dump}
"""


@pytest.mark.parametrize(
    ("command", "binary", "engine"),
    [("psql", "psql", "postgres"), ("mysql", "mariadb", "mysql")],
)
def test_the_sql_client_gets_no_credential_variable(
    command: str, binary: str, engine: str, tmp_path: Path, home: Path
) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    dump = tmp_path / "dump"
    (fake / binary).write_text(DUMP.format(dump=dump))
    (fake / binary).chmod(0o755)
    password = SECRET_PASSWORD
    port = 5432 if engine == "postgres" else 3306
    url = f"postgresql://u:{quote(password, safe='')}@db.internal/app"
    every_family = {
        "DB_SECRET": rds_secret(password=password, engine=engine, port=port),
        "OTHER_SECRET": rds_secret(password=password, engine=engine, port=port),
        "DB_HOST": "db.internal", "DB_USER": "u", "DB_NAME": "app", "DB_PASSWORD": password,
        "PGHOST": "db.internal", "PGUSER": "u", "PGDATABASE": "app", "PGPASSWORD": password,
        "WORDPRESS_DB_HOST": "db.internal", "WORDPRESS_DB_PASSWORD": password,
        "WORDPRESS_DATABASE_HOST": "db.internal", "WORDPRESS_DATABASE_PASSWORD": password,
        "DATABASE_URL": url, "APP_URL": url, "MYSQL_PWD": password,
    }  # fmt: skip
    env = {
        **every_family,
        "PATH": f"{fake}:{os.environ['PATH']}",
        "CLOUDBOOT_SECRET_ENV": "DB_SECRET",
        "CLOUDBOOT_URL_ENV": "APP_URL",
    }
    result = run([command, "-c", "select 1"], env, home=home)
    assert result.returncode == 0, result
    seen = dump.read_text(errors="replace")
    assert seen.splitlines()[0].endswith(binary)
    for form in spellings(password).values():
        assert form not in seen
    for name in every_family:
        assert f"\n{name}=" not in f"\n{seen}", name


# --- the process holding the password ----------------------------------------------------


def test_another_process_of_the_user_cannot_read_cloudboots_memory(home: Path) -> None:
    # cloudboot as nobody (Debian's python3.11 with this checkout's code), waiting for
    # a database that never answers; another process of nobody tries to read its
    # environment (which holds the URL with the password) and its memory.
    home.chmod(0o755)
    url = f"postgresql://u:{quote(SECRET_PASSWORD, safe='')}@127.0.0.1:{free_port()}/app"
    env = clean_env(
        home,
        {
            "DATABASE_URL": url,
            "CLOUDBOOT_WAIT_TIMEOUT": "20",
            "CLOUDBOOT_LOG_FORMAT": "json",
            "CLOUDBOOT_PGPASS": "",
            "CLOUDBOOT_PG_SERVICE_FILE": "",
            "PYTHONPATH": os.pathsep.join((str(SRC), sysconfig.get_paths()["purelib"])),
        },
    )
    process = subprocess.Popen(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
         "/usr/bin/python3.11", "-m", "bootstrap", "wait"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        assert '"cloudboot.' in process.stderr.readline()  # past the start: waiting
        assert Path(f"/proc/{process.pid}/status").read_text().count("\nUid:\t65534") == 1
        for name in ("environ", "mem"):
            probe = as_nobody("cat", f"/proc/{process.pid}/{name}")
            assert probe.returncode != 0, name
            assert "Permission denied" in probe.stderr, (name, probe.stderr)
        # The same file of a process that did not ask for this is readable (the probe works).
        sleeper = subprocess.Popen(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "sleep", "5"]
        )
        try:
            # Only once it is ``sleep``: setpriv itself, as root or between its setuid
            # (which makes a process undumpable) and its exec, is not readable either.
            wait_for(
                lambda: Path(f"/proc/{sleeper.pid}/comm").read_text() == "sleep\n",
                timeout=5, what="setpriv to exec sleep",
            )  # fmt: skip
            assert as_nobody("cat", f"/proc/{sleeper.pid}/environ").returncode == 0
        finally:
            sleeper.kill()
            sleeper.wait()
    finally:
        process.kill()
        process.communicate()
