"""The phoenix image, end to end on this machine: eight tasks of one release start at
once against one Aurora-style PostgreSQL.

What runs is the image's: its ``ENTRYPOINT`` (``cloudboot``) and ``CMD``
(``/work/bin/app start``), its ``cloudboot.toml`` and its ``APP_RELEASE_MODULE``. The
settings that name image paths are moved with the variables the image's README lists;
only the hook's ``/work/bin/app``, which no variable can change, is rewritten in a copy
of the file. The release is a
stand-in (``tests/phoenix_release``): its ``eval "App.Release.migrate"`` applies a SQL
migration with ``psql service=app`` and its ``start`` is an Elixir server that reads
``DATABASE_URL`` as Ecto does. The credentials arrive as Copilot's Aurora addon injects
them: ``SAMPLECLUSTER_SECRET``, the Secrets Manager RDS JSON, with a password full of
URL, ``.pgpass`` and shell delimiters.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import tomllib
from pathlib import Path

from bootproc import run as cloudboot
from imagerun import (
    IMAGES,
    Task,
    Tasks,
    entrypoint,
    exec_form,
    global_args,
    http_get,
    wait_http,
)
from readers import describe
from servers import HOST, SECRET_PASSWORD, Certificates, PostgresServer, free_port, unique_name

TASKS = 8
IMAGE_HOME = "/work/"
"""Where the image keeps the release; also its ``HOME`` and working directory."""
STAND_IN = Path(__file__).parent / "phoenix_release"
TOML = IMAGES / "phoenix" / "cloudboot.toml"
DOCKERFILE = IMAGES / "phoenix" / "Dockerfile"


def copy_release(dest: Path) -> Path:
    """The stand-in release, where the tasks share it (and its ``var/migrations.log``)."""
    shutil.copytree(STAND_IN, dest)
    (dest / "bin" / "app").chmod(0o755)
    return dest


def image_config(dest: Path, release: Path) -> Path:
    """The image's cloudboot.toml with only ``/work/bin/app`` replaced: in the hook and
    in the server command (the image's CMD)."""
    original = TOML.read_text()
    image_app = f"{IMAGE_HOME}bin/app"
    assert original.count(image_app) == 2
    dest.write_text(original.replace(image_app, str(release / "bin" / "app")))
    # Nothing else differs: the rest is the image's file as it ships.
    ours, theirs = tomllib.loads(dest.read_text()), tomllib.loads(original)
    ours["hooks"][0]["shell"] = ours["hooks"][0]["shell"].replace(
        str(release / "bin" / "app"), image_app
    )
    assert ours["boot"]["server"] == [str(release / "bin" / "app"), "start"]
    ours["boot"]["server"][0] = image_app
    assert ours == theirs
    return dest


def image_env() -> dict[str, str]:
    """The image's own ``ENV`` that the boot reads: the release module, from the build
    argument's default."""
    module = global_args(DOCKERFILE)["APP_RELEASE_MODULE"]
    assert module == "App.Release"
    assert "APP_RELEASE_MODULE=${APP_RELEASE_MODULE}" in DOCKERFILE.read_text()
    return {"APP_RELEASE_MODULE": module, "MIX_ENV": "prod", "PHX_SERVER": "true"}


def server_cmd(release: Path) -> list[str]:
    """The image's CMD, with the release where this test put it."""
    cmd = exec_form(DOCKERFILE, "CMD")
    assert cmd == [f"{IMAGE_HOME}bin/app", "start"], cmd
    return [str(release / cmd[0].removeprefix(IMAGE_HOME)), *cmd[1:]]


def aurora_secret(server: PostgresServer, user: str, dbname: str) -> str:
    """``SAMPLECLUSTER_SECRET`` as Copilot's Aurora Serverless addon injects it."""
    return json.dumps(
        {
            "dbClusterIdentifier": "sample-cluster-dbcluster-abcdefghijkl",
            "password": SECRET_PASSWORD,
            "dbname": dbname,
            "engine": "postgres",
            "port": server.port,
            "host": HOST,
            "username": user,
        }
    )


def page(url: str) -> dict[str, str]:
    status, _, body = http_get(url)
    assert status == 200, body
    return dict(line.split("=", 1) for line in body.splitlines())


def test_eight_tasks_of_a_release_migrate_once_and_all_serve(
    pg_server: PostgresServer, certs: Certificates, tmp_path: Path, tasks: Tasks
) -> None:
    user, dbname = unique_name("app"), unique_name("app_db")
    pg_server.create_user(user, SECRET_PASSWORD)
    assert not pg_server.database_exists(dbname)
    release = copy_release(tmp_path / "release")
    config = image_config(tmp_path / "cloudboot.toml", release)
    secret = aurora_secret(pg_server, user, dbname)
    release_id = unique_name("release")

    ports: list[int] = []
    while len(ports) < TASKS:
        port = free_port()
        if port not in ports:
            ports.append(port)
    started: list[tuple[Task, int, Path]] = []
    for index, port in enumerate(ports):
        home = tmp_path / f"task{index}"
        environ = {
            "SAMPLECLUSTER_SECRET": secret,
            "CLOUDBOOT_CONFIG": str(config),
            # The image's /etc/ssl/certs/rds-global-bundle.pem and /work/.pg*.
            "CLOUDBOOT_CA_FILE": str(certs.ca_file),
            "CLOUDBOOT_PGPASS": str(home / ".pgpass"),
            "CLOUDBOOT_PG_SERVICE_FILE": str(home / ".pg_service.conf"),
            "CLOUDBOOT_RELEASE": release_id,
            "CLOUDBOOT_LOG_FORMAT": "json",
            # The image's ENV, and the port the task definition gives.
            **image_env(),
            "PORT": str(port),
        }
        task = tasks.start(
            f"task{index}", [*entrypoint("phoenix"), *server_cmd(release)], environ, home=home
        )
        started.append((task, port, home))

    for task, port, _ in started:
        wait_http(f"http://{HOST}:{port}/", task, timeout=90)

    expected_digest = hashlib.sha256(SECRET_PASSWORD.encode()).hexdigest()
    for task, port, home in started:
        # cloudboot exec'd the release, which exec'd the Erlang VM: still the task's PID.
        assert task.event("cloudboot.exec")["pid"] == task.pid
        assert Path(task.program()).name == "beam.smp", task.program()
        served = page(f"http://{HOST}:{port}/")
        assert served == {
            "pid": str(task.pid),
            "scheme": "ecto",
            "hostname": HOST,
            "port": str(pg_server.port),
            "username": user,
            "database": dbname,
            "password_sha256": expected_digest,
            "before_3_14_agrees": "true",
            "query_keys": "ssl",
            "ssl": "true",
        }
        assert stat.S_IMODE((home / ".pgpass").stat().st_mode) == 0o600
        service = (home / ".pg_service.conf").read_text().splitlines()
        assert "sslmode=verify-full" in service
        assert f"sslrootcert={certs.ca_file}" in service
        # psql found the password in .pgpass only: the service file has none to give.
        assert not any(line.startswith("password") for line in service)

    check_migrated_once(pg_server, dbname, user, release, [task for task, _, _ in started])

    tasks.stop()
    for task, _, _ in started:
        task.check_output()


def check_migrated_once(
    server: PostgresServer, dbname: str, user: str, release: Path, started: list[Task]
) -> None:
    """The hook's body ran once, over verified TLS as the secret's user; the other
    tasks waited for the lock and skipped it; the database was created once."""
    runs = (release / "var" / "migrations.log").read_text().splitlines()
    assert len(runs) == 1, runs
    assert runs[0].endswith(" eval=App.Release.migrate"), runs
    recorded = server.admin_sql(
        "SELECT count(*), bool_and(ssl), min(ran_as) FROM migration_runs;", dbname
    )
    assert recorded.split() == [f"1|t|{user}"]
    assert server.admin_sql("SELECT body FROM greetings;", dbname).split("\n")[0] == (
        "hello from App.Release.migrate"
    )

    def count(name: str) -> int:
        return sum(1 for task in started for event in task.events() if event.get("event") == name)

    assert count("cloudboot.hook.done") == 1
    assert count("cloudboot.hook.skipped") == TASKS - 1
    assert count("cloudboot.database.created") == 1


def test_the_release_module_is_the_images_setting(
    pg_server: PostgresServer, certs: Certificates, tmp_path: Path, home: Path
) -> None:
    """``APP_RELEASE_MODULE`` (the build argument, also a task variable) names the
    module the migrate hook evaluates: no one edits cloudboot.toml for it."""
    user, dbname = unique_name("app"), unique_name("app_db")
    pg_server.create_user(user, SECRET_PASSWORD)
    release = copy_release(tmp_path / "release")
    environ = {
        **image_env(),
        "APP_RELEASE_MODULE": "Shop.Release",
        "DB_SECRET": aurora_secret(pg_server, user, dbname),
        "CLOUDBOOT_CONFIG": str(image_config(tmp_path / "cloudboot.toml", release)),
        "CLOUDBOOT_CA_FILE": str(certs.ca_file),
        "CLOUDBOOT_PGPASS": str(home / ".pgpass"),
        "CLOUDBOOT_PG_SERVICE_FILE": str(home / ".pg_service.conf"),
        "CLOUDBOOT_LOG_FORMAT": "json",
    }
    result = cloudboot(["migrate"], environ, home=home)
    assert result.returncode == 0, describe(result)
    runs = (release / "var" / "migrations.log").read_text().splitlines()
    assert [run.split(" eval=")[1] for run in runs] == ["Shop.Release.migrate"]
    assert pg_server.admin_sql("SELECT body FROM greetings;", dbname).startswith(
        "hello from App.Release.migrate"
    )
