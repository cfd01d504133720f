"""What every benchmark shares: the throwaway server, the environments of the boot paths
under test, running a boot path as a process, and the statistics.

Times are wall-clock. A boot path's "exec" moment is recorded by the command it execs,
``date +%s.%N`` (the same ``CLOCK_REALTIME`` as Python's ``time.time()``), with its
stdout going to a file.
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
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
SHELL_DIR = BENCH_DIR / "shell"
sys.path.insert(0, str(REPO / "tests"))

from servers import Certificates, PostgresServer, make_certificates  # noqa: E402

CLOUDBOOT = Path(sys.executable).parent / "cloudboot"
"""The installed console script: what an image's ENTRYPOINT runs."""

IMAGE_PYTHON = Path("/usr/bin/python3.11")
"""Debian 12's interpreter, which both images run cloudboot with (built with PGO and
LTO, unlike a pyenv or source build without ``--enable-optimizations``)."""

RECORD_EXEC = ("date", "+%s.%N")
"""The server command of every boot path: prints the moment it was exec'd."""

WP_SAMPLE = Path("/usr/share/wordpress/wp-config-sample.php")
REQUIRED_PROGRAMS = {
    "jq": "jq",
    "psql": "postgresql-client",
    "date": "coreutils",
    "sed": "sed",
    "runuser": "util-linux",
}


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
    """One row of the table: a path's samples under one figure, and its goal."""

    figure: str
    path: str
    unit: str  # "ms", "s", "MB", "x" or "runs"
    samples: list[float]
    goal: str = ""
    met: bool | None = None
    note: str = ""
    median_value: float | None = None  # set for derived rows (ratios)
    p90_value: float | None = None

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

    def to_json(self) -> dict[str, Any]:
        return {
            "figure": self.figure,
            "path": self.path,
            "unit": self.unit,
            "trials": len(self.samples),
            "median": round(self.median, 4),
            "p90": None if self.p90 is None else round(self.p90, 4),
            "goal": self.goal or None,
            "met": self.met,
            "note": self.note or None,
            "samples": [round(s, 4) for s in self.samples],
        }


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
        "cores_usable": len(os.sched_getaffinity(0)),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpu_busy_at_start": round(cpu_busy(), 3),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_executable": sys.executable,
        "python_config": sysconfig.get_config_var("CONFIG_ARGS") or "",
        "image_python": _first_line([str(IMAGE_PYTHON), "--version"]),
        "kernel": platform.release(),
        "os": os_name,
        "postgresql": _first_line(["/usr/lib/postgresql/15/bin/postgres", "--version"]),
        "jq": _first_line(["jq", "--version"]),
    }


def cpu_busy(seconds: float = 2.0) -> float:
    """The share of all cores busy (not idle, not waiting for I/O) over ``seconds`` while
    this process sleeps: what else runs on the machine."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]
        return idle, sum(fields[:8])

    idle_before, total_before = sample()
    time.sleep(seconds)
    idle_after, total_after = sample()
    total = total_after - total_before
    return 0.0 if total <= 0 else 1.0 - (idle_after - idle_before) / total


def _first_line(argv: Sequence[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
    except OSError:
        return "not installed"
    return (result.stdout or result.stderr).strip().splitlines()[0]


def missing_programs() -> list[str]:
    """Debian packages to install before the benchmarks can run."""
    missing = [pkg for prog, pkg in REQUIRED_PROGRAMS.items() if shutil.which(prog) is None]
    if not CLOUDBOOT.exists():
        missing.append(f"cloudboot (expected at {CLOUDBOOT}: run make venv)")
    if not WP_SAMPLE.exists():
        missing.append("wordpress")
    return missing


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


VENV = Interpreter("", (str(CLOUDBOOT),), sys.executable)
"""The console script of the venv ``make bench`` runs in (``make venv``)."""


def image_interpreter() -> Interpreter | None:
    """The same code and installed packages run by :data:`IMAGE_PYTHON` (same minor
    version, so the same wheels and byte code), or ``None`` where it is missing."""
    if not IMAGE_PYTHON.exists() or IMAGE_PYTHON.resolve() == Path(sys.executable).resolve():
        return None
    probe = subprocess.run(
        [str(IMAGE_PYTHON), "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if probe.stdout.strip() != str(sys.version_info[:2]):
        return None
    path = os.pathsep.join([str(REPO / "src"), sysconfig.get_paths()["purelib"]])
    return Interpreter(
        "Debian python3.11",
        (str(IMAGE_PYTHON), "-m", "bootstrap"),
        str(IMAGE_PYTHON),
        (("PYTHONPATH", path),),
    )


# --- the database and the environments -----------------------------------------------


@dataclass
class Database:
    """The throwaway TLS-only PostgreSQL and the login the boot paths use.

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

    def __post_init__(self) -> None:
        # What images/phoenix/cloudboot.toml sets, with the test CA instead of RDS's.
        self.config_file = self.workdir / "cloudboot.toml"
        self.config_file.write_text(
            "[tls]\n"
            'sslmode = "verify-full"\n'
            f"ca_file = {json.dumps(str(self.certs.ca_file))}\n"
            "[database]\ncreate_database = true\n"
            '[phoenix]\nurl_env = "DATABASE_URL"\nurl_scheme = "ecto"\n'
        )

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
        """libpq keywords for the shell paths' ``psql`` check (password from PGPASSWORD)."""
        return (
            f"host=localhost port={self.server.port} dbname={self.dbname} user={self.user} "
            f"sslmode=verify-full sslrootcert={self.certs.ca_file} connect_timeout=5"
        )

    def login(self, timeout: float = 2.0) -> None:
        """One real TLS login and ``select 1``, as the independent poller makes it."""
        import psycopg  # noqa: PLC0415 - only the time-to-ready poller needs it

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


@contextmanager
def database() -> Iterator[Database]:
    """A started server with the benchmark's user and database; removed afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix="cloudboot-bench-"))
    try:
        certs = make_certificates(workdir / "certs")
        with PostgresServer(certs) as server:
            server.start()
            user, password, dbname = "bench", secrets.token_hex(8), "bench_app"
            server.create_user(user, password)
            server.create_database(dbname, owner=user)
            yield Database(server, certs, user, password, dbname, workdir)
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
    return base_env(
        home,
        DB_SECRET=db.secret,
        CLOUDBOOT_CONFIG=str(db.config_file),
        CLOUDBOOT_PROFILE=str(home / "application.profile"),
        CLOUDBOOT_LOG_FORMAT="json",
        **dict(interpreter.env),
        **extra,
    )


def shell_env(db: Database, home: Path, **extra: str) -> dict[str, str]:
    """The tutorials' shell path: the same ``DB_SECRET``, nothing else."""
    return base_env(home, DB_SECRET=db.secret, **extra)


# --- running a boot path --------------------------------------------------------------


@dataclass
class Run:
    """A boot path as a process whose stdout (the exec'd ``date``) goes to a file."""

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

    def tail(self) -> str:
        try:
            return "\n".join(self.stderr.read_text(errors="replace").splitlines()[-15:])
        except OSError:
            return "(no stderr)"


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


def ms(seconds: float) -> float:
    return seconds * 1000.0
