"""What every benchmark shares: the throwaway server and its cold starts, the
environments of the boot paths under test, running a boot path as a process, cloudboot's
JSON log, and the statistics.

Times are wall-clock. A boot path's "exec" moment is recorded by the command it execs
(``date +%s.%N``, the same ``CLOCK_REALTIME`` as Python's ``time.time()``, as are
PostgreSQL's ``%n`` log prefix and structlog's ISO timestamps).
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
SHELL_DIR = BENCH_DIR / "shell"
sys.path.insert(0, str(REPO / "tests"))

from servers import (  # noqa: E402
    PG_BIN,
    PG_OS_USER,
    Certificates,
    PostgresServer,
    make_certificates,
)

CLOUDBOOT = Path(sys.executable).parent / "cloudboot"
"""The installed console script: what an image's ENTRYPOINT runs."""

IMAGE_PYTHON = Path("/usr/bin/python3.11")
"""Debian 12's interpreter, which both images run cloudboot with (built with PGO and
LTO, unlike a pyenv or source build without ``--enable-optimizations``): the reference
interpreter of the boot figures."""

RECORD_EXEC = ("date", "+%s.%N")
"""The server command of the boot-overhead and fleet paths: prints when it was exec'd."""

WP_SAMPLE = Path("/usr/share/wordpress/wp-config-sample.php")
REQUIRED_PROGRAMS = {
    "jq": "jq",
    "psql": "postgresql-client",
    "pg_isready": "postgresql-client",
    "date": "coreutils",
    "sed": "sed",
    "runuser": "util-linux",
}

RECOVERY_ROWS = 400_000
"""Rows inserted (and never checkpointed) before the crash that every cold start
recovers from: about 55 MB of WAL, replayed in 0.2-0.4 s here, while the server already
listens and answers "the database system is starting up"."""


# --- statistics ----------------------------------------------------------------------


def p90(values: Sequence[float]) -> float:
    """The 90th percentile, interpolated between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = 0.9 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Figure:
    """One row of the table: a path's samples under one figure, and its goal.

    ``cpu`` holds the CPU time (user + system, ms) of each sample where it was measured;
    ``notes`` is the short text of the table's last column (false-ready, attempts).
    """

    figure: str
    path: str
    unit: str  # "ms", "s", "MB", "x" or "runs"
    samples: list[float]
    goal: str = ""
    met: bool | None = None
    note: str = ""
    median_value: float | None = None  # set for derived rows (ratios)
    p90_value: float | None = None
    cpu: list[float] = field(default_factory=list)
    notes: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        if self.median_value is not None:
            return self.median_value
        return statistics.median(self.samples)

    @property
    def p90(self) -> float | None:
        if self.p90_value is not None:
            return self.p90_value
        return p90(self.samples) if self.samples else None

    @property
    def cpu_median(self) -> float | None:
        return statistics.median(self.cpu) if self.cpu else None

    def to_json(self) -> dict[str, Any]:
        return {
            "figure": self.figure,
            "path": self.path,
            "unit": self.unit,
            "trials": len(self.samples),
            "median": round(self.median, 4),
            "p90": None if self.p90 is None else round(self.p90, 4),
            "cpu_median_ms": None if self.cpu_median is None else round(self.cpu_median, 2),
            "goal": self.goal or None,
            "met": self.met,
            "notes": self.notes or None,
            "note": self.note or None,
            "samples": [round(s, 4) for s in self.samples],
            "cpu_ms": [round(s, 2) for s in self.cpu],
            **({"details": self.details} if self.details else {}),
        }


def ms(seconds: float) -> float:
    return seconds * 1000.0


# --- the machine ---------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = "unknown"
    with Path("/proc/cpuinfo").open() as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    os_name = "unknown"
    release = Path("/etc/os-release")
    if release.exists():
        for line in release.read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "cores_usable": cores(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpu_busy_at_start": round(cpu_busy(), 3),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_executable": sys.executable,
        "python_config": sysconfig.get_config_var("CONFIG_ARGS") or "",
        "image_python": first_line([str(IMAGE_PYTHON), "--version"]),
        "kernel": platform.release(),
        "os": os_name,
        "postgresql": first_line([str(PG_BIN / "postgres"), "--version"]),
        "jq": first_line(["jq", "--version"]),
    }


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


def _cpu_jiffies(line: str | None = None) -> tuple[int, int]:
    """All cores' idle (idle + waiting for I/O) and total time so far, in clock ticks,
    from ``line`` (the first line of ``/proc/stat``) or the file itself."""
    line = line or Path("/proc/stat").read_text().split("\n", 1)[0]
    fields = [int(x) for x in line.split()[1:]]
    return fields[3] + fields[4], sum(fields[:8])


def busy_cpu_seconds(line: str | None = None) -> float:
    """CPU seconds all cores have been busy since boot (steal included: a VM's host took
    it); the difference of two readings is what ran on the machine in between."""
    idle, total = _cpu_jiffies(line)
    return (total - idle) / os.sysconf("SC_CLK_TCK")


def cpu_busy(seconds: float = 2.0) -> float:
    """The share of all cores busy (not idle, not waiting for I/O) over ``seconds`` while
    this process sleeps: what else runs on the machine."""
    idle_before, total_before = _cpu_jiffies()
    time.sleep(seconds)
    idle_after, total_after = _cpu_jiffies()
    total = total_after - total_before
    return 0.0 if total <= 0 else 1.0 - (idle_after - idle_before) / total


def first_line(argv: Sequence[str]) -> str:
    """The first line a program prints (its version), or "not installed"."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
    except OSError:
        return "not installed"
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0] if lines else "no output"


def missing_programs() -> list[str]:
    """Debian packages to install before the benchmarks can run."""
    missing = [pkg for prog, pkg in REQUIRED_PROGRAMS.items() if shutil.which(prog) is None]
    if not CLOUDBOOT.exists():
        missing.append(f"cloudboot (expected at {CLOUDBOOT}: run make venv)")
    if not WP_SAMPLE.exists():
        missing.append("wordpress")
    return sorted(set(missing))


# --- the interpreters -----------------------------------------------------------------


@dataclass(frozen=True)
class Interpreter:
    """How a benchmark starts cloudboot: ``argv`` before cloudboot's own arguments, the
    Python that runs it, and variables to add to its environment."""

    label: str
    argv: tuple[str, ...]
    python: str
    env: tuple[tuple[str, str], ...] = ()

    def command(self, *args: str) -> list[str]:
        return [*self.argv, *args]


VENV = Interpreter("venv python", (str(CLOUDBOOT),), sys.executable)
"""The console script of the venv ``make bench`` runs in (``make venv``)."""


def image_interpreter(source: Path = REPO / "src", label: str = "Debian python3.11") -> (
    Interpreter | None
):  # fmt: skip
    """The code in ``source`` (a folder holding the ``bootstrap`` package) with the venv's
    installed packages, run by :data:`IMAGE_PYTHON` (same minor version, so the same
    wheels and byte code), or ``None`` where that interpreter is missing."""
    if not IMAGE_PYTHON.exists():
        return None
    probe = subprocess.run(
        [str(IMAGE_PYTHON), "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if probe.stdout.strip() != str(sys.version_info[:2]):
        return None
    path = os.pathsep.join([str(source), sysconfig.get_paths()["purelib"]])
    return Interpreter(
        label,
        (str(IMAGE_PYTHON), "-m", "bootstrap"),
        str(IMAGE_PYTHON),
        (("PYTHONPATH", path),),
    )


def reference_interpreter() -> Interpreter:
    """Debian's python3.11 where it exists (the images'), else the venv's."""
    return image_interpreter() or VENV


# --- the database, its cold starts and the environments --------------------------------


@dataclass(frozen=True)
class ServerStart:
    """One cold start as the server's own log tells it (``%n``: epoch seconds, ms)."""

    launched: float  # time.time() just before pg_ctl -W start
    listening: float | None  # "listening on IPv4 address": the port is open from here
    ready: float | None  # "database system is ready to accept connections"

    @property
    def window(self) -> float | None:
        """How long the port was open while the server still said "starting up"."""
        if self.listening is None or self.ready is None:
            return None
        return self.ready - self.listening


@dataclass
class Database:
    """The throwaway TLS-only PostgreSQL, the login the boot paths use, and the crashed
    data folder every cold start begins from.

    The password is 16 letters and digits, as Copilot's Aurora addon generates it
    (``ExcludePunctuation``): the tutorials' shell path quotes nothing.
    """

    server: PostgresServer
    certs: Certificates
    user: str
    password: str
    dbname: str
    workdir: Path
    config_file: Path = field(init=False)
    passfile: Path = field(init=False)
    snapshot: Path = field(init=False)
    _log_offset: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        # What images/phoenix/cloudboot.toml sets, with the test CA instead of RDS's.
        # The server command is named by each path (CLOUDBOOT_SERVER): the boot runs
        # for it alone, and the harness checks that it waited.
        self.config_file = self.workdir / "cloudboot.toml"
        self.config_file.write_text(
            "[tls]\n"
            'sslmode = "verify-full"\n'
            f"ca_file = {json.dumps(str(self.certs.ca_file))}\n"
            "[database]\ncreate_database = true\n"
            '[phoenix]\nurl_env = "DATABASE_URL"\nurl_scheme = "ecto"\n'
        )
        # The password of the waiters' own checks and of the next command's login, in
        # a file named by the conninfo: nothing of it in any argv or environment.
        self.passfile = self.workdir / "bench.pgpass"
        self.passfile.write_text(
            f"localhost:{self.server.port}:{self.dbname}:{self.user}:{self.password}\n"
        )
        self.passfile.chmod(0o600)
        self.snapshot = self.server.directory / "crashed"

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def secret(self) -> str:
        """``DB_SECRET`` as Copilot injects it (the Secrets Manager RDS layout)."""
        return json.dumps(
            {
                "dbClusterIdentifier": "bench-cluster",
                "password": self.password,
                "dbname": self.dbname,
                "engine": "postgres",
                "port": self.server.port,
                "host": "localhost",
                "username": self.user,
            }
        )

    def conninfo(self) -> str:
        """libpq keywords of a verified-TLS login (the password from :attr:`passfile`)."""
        return (
            f"host=localhost port={self.server.port} dbname={self.dbname} user={self.user} "
            f"sslmode=verify-full sslrootcert={self.certs.ca_file} passfile={self.passfile} "
            "connect_timeout=5"
        )

    def login(self, timeout: float = 2.0) -> float:
        """One real TLS login and ``select 1``, as the independent prober makes it; the
        moment (``time.time()``) the server's answer to ``select 1`` arrived."""
        import psycopg  # noqa: PLC0415 - only the time-to-ready prober needs it

        with psycopg.connect(
            host="localhost",
            port=self.server.port,
            dbname=self.dbname,
            user=self.user,
            password=self.password,
            sslmode="verify-full",
            sslrootcert=str(self.certs.ca_file),
            connect_timeout=max(2, int(timeout)),
        ) as connection:
            connection.execute("select 1").fetchall()
            return time.time()

    # -- cold starts: crash, restore, start at a chosen moment ---------------------------

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", PG_OS_USER, "--", str(PG_BIN / "pg_ctl"),
             "-D", str(self.server.data_dir), *args],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip

    def crash(self) -> None:
        """Stop the server the way a power cut would (``-m immediate``: no checkpoint)."""
        if self.server.is_running():
            self._pg_ctl("-m", "immediate", "-w", "stop")

    def make_snapshot(self) -> None:
        """Write :data:`RECOVERY_ROWS` rows, crash, and keep a copy of the data folder:
        every cold start replays that WAL while it already listens."""
        rows = f"SELECT g, repeat('x', 100) FROM generate_series(1, {RECOVERY_ROWS:d}) g"  # noqa: S608
        sql = f"CREATE TABLE recovery_work (id int, filler text); INSERT INTO recovery_work {rows};"
        self.server.admin_sql(sql, self.dbname)
        self.crash()
        shutil.rmtree(self.snapshot, ignore_errors=True)
        subprocess.run(["cp", "-a", str(self.server.data_dir), str(self.snapshot)], check=True)

    def restore_snapshot(self) -> None:
        """The data folder as the crash left it (the server is down: :meth:`crash`)."""
        shutil.rmtree(self.server.data_dir)
        subprocess.run(["cp", "-a", str(self.snapshot), str(self.server.data_dir)], check=True)
        self._log_offset = self.server.log_file.stat().st_size

    def cold_start(self) -> float:
        """``pg_ctl -W start`` (returns at once); the moment just before it."""
        launched = time.time()
        self._pg_ctl("-l", str(self.server.log_file), "-W", "start")
        return launched

    def start_report(self, launched: float) -> ServerStart:
        """What the server's log says about the start since :meth:`restore_snapshot`."""
        with self.server.log_file.open("rb") as log:
            log.seek(self._log_offset)
            lines = log.read().decode(errors="replace").splitlines()

        def first(text: str) -> float | None:
            for line in lines:
                if text in line:
                    return float(line.split(" ", 1)[0])
            return None

        return ServerStart(
            launched,
            first("listening on IPv4 address"),
            first("database system is ready to accept connections"),
        )


SERVER_SETTINGS = {
    # Every log line starts with the epoch time in ms: the server's own "ready" moment.
    "log_line_prefix": "%n [%p] ",
    # No checkpoint between the snapshot's writes and its crash: all of it is replayed.
    "max_wal_size": "4GB",
    "checkpoint_timeout": "1h",
    "autovacuum": "off",
}


@contextmanager
def database() -> Iterator[Database]:
    """A started server with the benchmark's user and database and a crashed copy of
    its data folder (:meth:`Database.make_snapshot`); removed afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix="cloudboot-bench-"))
    try:
        certs = make_certificates(workdir / "certs")
        with PostgresServer(certs) as server:
            with (server.data_dir / "postgresql.conf").open("a") as conf:
                conf.write("# cloudboot benchmarks\n")
                conf.writelines(f"{key} = '{value}'\n" for key, value in SERVER_SETTINGS.items())
            server.start()
            user, password, dbname = "bench", secrets.token_hex(8), "bench_app"
            server.create_user(user, password)
            server.create_database(dbname, owner=user)
            db = Database(server, certs, user, password, dbname, workdir)
            db.make_snapshot()
            server.start()  # recovers from the crash: up for the figures that need it
            yield db
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def base_env(home: Path, **extra: str) -> dict[str, str]:
    """PATH, LANG and HOME only (nothing of ours can steer a client), plus ``extra``."""
    env = {
        "PATH": os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(home),
    }
    env.update(extra)
    return env


def cloudboot_env(
    db: Database, home: Path, interpreter: Interpreter = VENV, **extra: str
) -> dict[str, str]:
    """The Phoenix case: Copilot's ``DB_SECRET``, the image's TOML file, and every
    artifact (ecto URL, ``~/.pgpass``, ``~/.pg_service.conf``, ``~/application.profile``).
    JSON logs, as on ECS (stderr is not a terminal)."""
    settings = {
        "DB_SECRET": db.secret,
        "CLOUDBOOT_CONFIG": str(db.config_file),
        "CLOUDBOOT_PROFILE": str(home / "application.profile"),
        "CLOUDBOOT_LOG_FORMAT": "json",
        "CLOUDBOOT_SERVER": " ".join(RECORD_EXEC),
        **dict(interpreter.env),
        **extra,
    }
    return base_env(home, **settings)


def shell_env(db: Database, home: Path, **extra: str) -> dict[str, str]:
    """The tutorials' shell path: the same ``DB_SECRET``, nothing else."""
    return base_env(home, DB_SECRET=db.secret, **extra)


# --- cloudboot's JSON log ---------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One line of cloudboot's JSON log."""

    name: str
    at: float  # time.time() scale
    fields: Mapping[str, Any]


def events(path: Path) -> list[Event]:
    """The JSON log events in ``path`` (other lines, such as a hook's, are skipped)."""
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
            stamp = datetime.fromisoformat(record["timestamp"]).timestamp()
        except (ValueError, KeyError, TypeError):
            continue
        found.append(Event(str(record.get("event")), stamp, record))
    return found


def require_event(path: Path, name: str, what: str) -> None:
    """Raise unless cloudboot's log in ``path`` holds ``name``: a row that claims to
    measure the boot must not silently measure a boot that skipped its wait."""
    if not any(event.name == name for event in events(path)):
        tail = "\n".join(path.read_text(errors="replace").splitlines()[-10:])
        raise RuntimeError(
            f"{what}: cloudboot logged no {name} event, so it did not boot as benchmarked "
            f"(if it now boots only for the image's server command, name that command in "
            f"benchlib.Database's TOML file). Its log ends:\n{tail}"
        )


# --- running a boot path --------------------------------------------------------------


@dataclass
class Run:
    """A boot path as a process whose stdout and stderr go to files."""

    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    launched: float  # time.time() just before the fork

    def finish(self, timeout: float) -> tuple[int, Any]:
        """Wait for the process; its status and resource usage (``os.wait4``)."""
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
            if pid:
                self.process.returncode = os.waitstatus_to_exitcode(status)
                return self.process.returncode, usage
            if time.monotonic() > deadline:
                self.process.kill()
                self.process.wait()
                raise TimeoutError(f"{self.process.args!r} did not finish: {self.tail()}")
            time.sleep(0.002)

    def exec_time(self) -> float:
        """When the boot path exec'd its server command (``date``'s output)."""
        text = self.stdout.read_text().strip()
        if not text:
            raise RuntimeError(f"no exec timestamp from {self.process.args!r}: {self.tail()}")
        return float(text.splitlines()[-1])

    def output(self) -> str:
        """What it printed so far, stdout and stderr."""
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")

    def tail(self) -> str:
        try:
            return "\n".join(self.output().splitlines()[-15:])
        except OSError:
            return "(no output)"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def launch(argv: Sequence[str], env: Mapping[str, str], workdir: Path) -> Run:
    """Start ``argv`` with stdin closed, stdout and stderr to files in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    stdout, stderr = workdir / "stdout", workdir / "stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        launched = time.time()
        process = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=dict(env),
            cwd=workdir,
        )  # fmt: skip
    return Run(process, stdout, stderr, launched)


def fresh_dir(parent: Path, name: str) -> Path:
    """An empty directory (a container's first boot finds no artifact)."""
    path = parent / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
