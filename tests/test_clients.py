"""``cloudboot psql`` and ``cloudboot mysql`` with the real clients against the throwaway
TLS servers: connected with stdin closed, no password in any argv or left in any file."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bootproc import Finished, Target, make_target, run
from bootstrap.clients import anonymous_file, client_environment, fd_path, find_client
from bootstrap.engines import engine_for
from factories import login_secret
from leakguard import assert_no_secret, find_secrets
from servers import (
    SECRET_PASSWORD,
    Certificates,
    MariaDBServer,
    PostgresServer,
    wait_for,
)

CLIENT_BINARIES = {"postgres": ("psql",), "mysql": ("mariadb", "mysql")}


CLIENT = {"postgres": "psql", "mysql": "mysql"}
"""The cloudboot command that runs each engine's client."""


@pytest.fixture(scope="module")
def pg_login(pg_server: PostgresServer) -> Target:
    return make_target("postgres", pg_server, SECRET_PASSWORD, create_database=True)


@pytest.fixture(scope="module")
def my_login(mariadb_server: MariaDBServer) -> Target:
    return make_target("mysql", mariadb_server, SECRET_PASSWORD, create_database=True)


@pytest.fixture(params=["postgres", "mysql"])
def login(request: pytest.FixtureRequest) -> Target:
    name = "pg_login" if request.param == "postgres" else "my_login"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


def client_argv(login: Target, sql: str) -> list[str]:
    """``cloudboot psql -c SQL`` or ``cloudboot mysql -e SQL``, without ``cloudboot``."""
    command = CLIENT[login.engine]
    return [command, "-e" if command == "mysql" else "-c", sql]


@dataclass(frozen=True)
class Places:
    """Fresh, empty HOME, TMPDIR and XDG_RUNTIME_DIR for one client run."""

    home: Path
    tmpdir: Path
    runtime: Path

    def all(self) -> tuple[Path, Path, Path]:
        return (self.home, self.tmpdir, self.runtime)


@pytest.fixture
def places(tmp_path: Path) -> Places:
    made = Places(tmp_path / "home", tmp_path / "tmp", tmp_path / "run")
    for path in made.all():
        path.mkdir(mode=0o700)
    return made


def environ_for(login: Target, places: Places, **secret_changes: object) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "LANG": "C.UTF-8",
        "HOME": str(places.home),
        "TMPDIR": str(places.tmpdir),
        "XDG_RUNTIME_DIR": str(places.runtime),
        "DB_SECRET": login_secret(login, **secret_changes),
        "CLOUDBOOT_CA_FILE": str(login.ca_file),
    }


def cloudboot(args: list[str], environ: dict[str, str]) -> Finished:
    """The real entry point in a child, stdin closed (a prompt would read EOF or hang)."""
    return run(args, environ, home=Path(environ["HOME"]), timeout=30)


# --- connected, over TLS, no prompt ----------------------------------------------------


def test_psql_prints_the_user(pg_login: Target, places: Places) -> None:
    environ = environ_for(pg_login, places)
    result = cloudboot(["psql", "-tAc", "select current_user"], environ)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{pg_login.user}\n", "")

    # The session is TLS (the server accepts nothing else, but say so) in the database.
    query = "select ssl, current_database() from pg_stat_ssl where pid = pg_backend_pid()"
    result = cloudboot(["psql", "-tAc", query], environ)
    assert result.stdout == f"t|{pg_login.dbname}\n"

    # Another database on the same server, as the operator asks.
    result = cloudboot(["psql", "-tAc", "select current_database()", "postgres"], environ)
    assert (result.returncode, result.stdout) == (0, "postgres\n")


def test_mysql_prints_the_user(my_login: Target, places: Places) -> None:
    environ = environ_for(my_login, places)
    result = cloudboot(["mysql", "-e", "select current_user()"], environ)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"current_user()\n{my_login.user}@%\n"

    query = (
        "select database(), variable_value from information_schema.session_status "
        "where variable_name = 'Ssl_version'"
    )
    result = cloudboot(["mysql", "-N", "-e", query], environ)
    database, tls = result.stdout.strip().split("\t")
    assert database == my_login.dbname
    assert tls.startswith("TLSv1.")


def test_wrong_password_fails_without_prompting(login: Target, places: Places) -> None:
    environ = environ_for(login, places, password="not-the-password")
    result = cloudboot(client_argv(login, "select 1"), environ)
    assert result.returncode != 0
    assert "denied" in result.stderr or "authentication failed" in result.stderr


def test_clients_verify_the_certificate(login: Target, places: Places, certs: Certificates) -> None:
    environ = environ_for(login, places)
    environ["CLOUDBOOT_CA_FILE"] = str(certs.other_ca_file)
    result = cloudboot(client_argv(login, "select 1"), environ)
    assert result.returncode != 0
    # libpq: "SSL error: certificate verify failed"; MariaDB: "TLS/SSL error: self-signed
    # certificate in certificate chain" (the server sends its CA along).
    assert "certificate verify failed" in result.stderr or "TLS/SSL error" in result.stderr


# --- the password stays out of argv and off the disk -----------------------------------


def _session_of(pid: str) -> str | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[3]  # the session id


def all_command_lines() -> str:
    """Every process's argv in this test run's session, one per line (the machine may
    run other people's test suites, whose argv are theirs: a shared runner is not
    cloudboot's to judge)."""
    session = _session_of(str(os.getpid()))
    lines = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and _session_of(pid) == session:
            try:
                raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue  # gone meanwhile
            lines.append(raw.replace(b"\0", b" ").decode("utf-8", "replace"))
    return "\n".join(lines)


def descriptors(pid: int) -> list[str]:
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            found.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return found


SLEEPS = {"postgres": ["-tAc", "select pg_sleep(2)"], "mysql": ["-N", "-e", "select sleep(2)"]}


@pytest.fixture
def running_client(login: Target, places: Places) -> Iterator[subprocess.Popen[bytes]]:
    """``cloudboot <client>`` running a 2 s query, started and waited for."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bootstrap", CLIENT[login.engine], *SLEEPS[login.engine]],
        env=environ_for(login, places),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    yield process
    if process.poll() is None:
        process.kill()
    process.communicate()


def test_no_command_line_on_the_machine_holds_the_password(
    login: Target, running_client: subprocess.Popen[bytes]
) -> None:
    pid = running_client.pid
    binaries = CLIENT_BINARIES[login.engine]

    def client_started() -> bool:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        return os.path.basename(argv0.decode()) in binaries

    # exec: the client takes cloudboot's PID.
    wait_for(client_started, timeout=10, what="the client to replace cloudboot")
    # Exactly the arguments cloudboot means to pass: the MariaDB client blanks a
    # --password=... in its own argv after starting, which a scan alone could miss.
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    argv[0] = os.path.basename(argv[0])  # Debian's psql is a wrapper that execs the real one
    if login.engine == "postgres":
        assert argv == ["psql", "-w", *SLEEPS["postgres"]]
    else:
        assert argv[1].startswith("--defaults-file=/proc/self/fd/")
        assert [argv[0], *argv[2:]] == ["mariadb", *SLEEPS["mysql"]]
    own_descriptors = descriptors(pid)
    environment = Path(f"/proc/{pid}/environ").read_bytes().decode("utf-8", "replace")
    scans = 0
    while running_client.poll() is None:
        assert_no_secret(all_command_lines())
        scans += 1
        time.sleep(0.1)
    assert scans >= 5, "the query ended before the scan could watch it"
    stdout, stderr = running_client.communicate()
    assert running_client.returncode == 0, stderr.decode()
    assert stdout.strip() in (b"", b"0")  # psql prints an empty row, mariadb the 0
    # Not in the client's environment either, and read from memory, not from a path.
    assert_no_secret(environment)
    assert "DB_SECRET=" not in environment
    memfds = [link for link in own_descriptors if link.startswith("/memfd:cloudboot-")]
    assert memfds, own_descriptors
    assert all(link.endswith("(deleted)") for link in memfds)


def files_under(*roots: Path) -> list[Path]:
    return [Path(d) / f for root in roots for d, _, fs in os.walk(root) for f in fs]


def test_no_file_holding_the_password_remains(login: Target, places: Places) -> None:
    temp_root = Path(tempfile.gettempdir())
    before = set(temp_root.iterdir())
    argv = client_argv(login, "select 42")
    result = cloudboot(argv, environ_for(login, places))
    assert result.returncode == 0, result.stderr
    assert "42" in result.stdout
    # Nothing at all in the places a client or cloudboot would put a temporary file...
    assert files_under(*places.all()) == []
    # ...and nothing new in the system's temporary folder that holds the password.
    for entry in set(temp_root.iterdir()) - before:
        for path in files_under(entry) if entry.is_dir() else [entry]:
            with open(path, "rb") as file:
                assert not find_secrets(file.read().decode("utf-8", "replace")), path


# --- failures before the exec ----------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "package"), [("psql", "postgresql-client"), ("mysql", "mariadb-client")]
)
def test_missing_client_names_the_debian_package(
    command: str, package: str, login: Target, places: Places, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    environ = environ_for(login, places, engine="postgres" if command == "psql" else "mysql")
    environ["PATH"] = str(empty)
    result = cloudboot([command], environ)
    assert result.returncode == 127
    assert f"install the Debian package {package}" in result.stderr


def test_client_of_the_other_engine_is_a_usage_error(pg_login: Target, places: Places) -> None:
    result = cloudboot(["mysql"], environ_for(pg_login, places))
    assert result.returncode == 64
    assert "use 'cloudboot psql'" in result.stderr


# --- what the client is handed, seen by a stand-in -------------------------------------

STAND_IN = """#!/bin/sh
for arg in "$@"; do echo "arg:$arg"; done
env | cut -d= -f1 | sed 's/^/env:/'
grep '^SigIgn' /proc/self/status
for file in "$PGSERVICEFILE" "$PGPASSFILE" "${1#--defaults-file=}"; do
    [ -e "$file" ] && echo "file:$(stat -L -c '%a %F' "$file"):$(grep -c '' "$file")"
done
true
"""


def stand_in(tmp_path: Path, name: str) -> str:
    """A PATH whose ``name`` is a script reporting what it was given (never the
    password itself: only names, modes and line counts)."""
    directory = tmp_path / "bin"
    directory.mkdir(exist_ok=True)
    script = directory / name
    script.write_text(STAND_IN)
    script.chmod(0o755)
    return f"{directory}:{os.environ['PATH']}"


def test_psql_gets_a_service_and_a_passfile_in_memory(
    pg_login: Target, places: Places, tmp_path: Path
) -> None:
    environ = environ_for(pg_login, places)
    environ.update(PATH=stand_in(tmp_path, "psql"), PGPASSWORD="stale", PGSERVICE="other")
    result = cloudboot(["psql", "-tAc", "select 1"], environ)
    lines = result.stdout.splitlines()
    assert [x for x in lines if x.startswith("arg:")] == ["arg:-w", "arg:-tAc", "arg:select 1"]
    env = {x[4:] for x in lines if x.startswith("env:")}
    assert {"PGSERVICEFILE", "PGPASSFILE", "PGSERVICE"} <= env
    assert not {"DB_SECRET", "PGPASSWORD"} & env
    # Both are regular 0600 files (libpq ignores a password file others may read).
    assert [x for x in lines if x.startswith("file:")] == [
        "file:600 regular file:8",  # the service section: [app] and seven keys
        "file:600 regular file:1",  # one .pgpass line
    ]
    sigign = int(next(x for x in lines if x.startswith("SigIgn")).split()[1], 16)
    assert not sigign & (1 << 12), "SIGPIPE must not stay ignored across the exec"


def test_mysql_gets_a_defaults_file_in_memory_first(
    my_login: Target, places: Places, tmp_path: Path
) -> None:
    environ = environ_for(my_login, places)
    environ["PATH"] = stand_in(tmp_path, "mariadb")
    result = cloudboot(["mysql", "-e", "select 1"], environ)
    lines = result.stdout.splitlines()
    args = [x[4:] for x in lines if x.startswith("arg:")]
    assert args[0].startswith("--defaults-file=/proc/self/fd/")
    assert args[1:] == ["-e", "select 1"]
    assert "env:DB_SECRET" not in lines
    files = [x for x in lines if x.startswith("file:")]
    assert len(files) == 1
    assert files[0].startswith("file:600 regular file:")


# --- helpers -----------------------------------------------------------------------


def test_find_client_prefers_mariadb(tmp_path: Path) -> None:
    for name in ("mysql", "mariadb"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    environ = {"PATH": str(tmp_path)}
    client = engine_for("mysql").client
    assert find_client(client, environ) == str(tmp_path / "mariadb")
    (tmp_path / "mariadb").unlink()
    assert find_client(client, environ) == str(tmp_path / "mysql")


def test_anonymous_file_is_private_and_nameless() -> None:
    fd = anonymous_file("cloudboot-test", "some text\n")
    try:
        assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o600
        assert os.readlink(fd_path(fd)).startswith("/memfd:cloudboot-test")
        # Opened afresh by path, it reads from the start (psql re-reads on \c).
        for _ in range(2):
            assert Path(fd_path(fd)).read_text() == "some text\n"
        assert not os.get_inheritable(fd)
    finally:
        os.close(fd)


def test_client_environment_drops_the_password_variables() -> None:
    environ = {
        "PGHOST": "db",
        "PGUSER": "app",
        "PGPASSWORD": SECRET_PASSWORD,
        "PGDATABASE": "app",
        "MYSQL_PWD": "x",
        "PATH": "/bin",
    }
    assert client_environment(environ) == {"PATH": "/bin"}
