"""make demo: boot a sample app through cloudboot against a throwaway TLS PostgreSQL.

Starts its own PostgreSQL (TLS required, SCRAM only, a trustme CA), hands cloudboot
the credentials the way Copilot does (a JSON ``DB_SECRET`` with a password full of
characters that break shell scripts), shows the rendered artifacts with the password
masked, then runs the real boot: wait over verified TLS, create the database, run a
locked migration hook, and exec the sample app, which reads ``DATABASE_URL``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from servers import PostgresServer, make_certificates  # noqa: E402

PASSWORD = "p@ss:w/rd?#%+ 'q' \"dq\" \\ $HOME `x` é漢字"
CLOUDBOOT = str(Path(sys.executable).with_name("cloudboot"))

APP = """
import os, psycopg
with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    row = conn.execute(
        "select current_user, current_database(), version, (select count(*) from notes)"
        " from pg_stat_ssl where pid = pg_backend_pid()"
    ).fetchone()
print(f"sample app (pid {os.getpid()}): user={row[0]} database={row[1]} tls={row[2]} "
      f"notes={row[3]}")
"""


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def masked(text: str) -> str:
    from urllib.parse import quote  # noqa: PLC0415

    for form in (quote(PASSWORD, safe=""), PASSWORD.replace("\\", "\\\\").replace(":", "\\:")):
        text = text.replace(form, "***")
    return text


def run(argv: list[str], env: dict[str, str]) -> None:
    print("$ " + " ".join(argv), flush=True)
    done = subprocess.run(
        argv, env=env, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    sys.stdout.write(masked(done.stdout))
    if done.returncode != 0:
        raise SystemExit(f"demo: {argv[1] if len(argv) > 1 else argv[0]} exited {done.returncode}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="cloudboot-demo-") as tmp:
        top = Path(tmp)
        os.chmod(top, 0o755)
        certs = make_certificates(top / "certs")
        with PostgresServer(certs) as server:
            server.start()
            server.create_user("app", PASSWORD)
            home = top / "home"
            home.mkdir()
            (top / "app.py").write_text(APP)
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(home),
                "DB_SECRET": json.dumps(
                    {
                        "dbClusterIdentifier": "demo",
                        "engine": "postgres",
                        "host": "localhost",
                        "port": server.port,
                        "dbname": "demo_app",
                        "username": "app",
                        "password": PASSWORD,
                    }
                ),
                "CLOUDBOOT_CA_FILE": str(certs.ca_file),
                "CLOUDBOOT_PROFILE": str(home / "application.profile"),
                "CLOUDBOOT_RELEASE": "demo-1",
                "CLOUDBOOT_MIGRATE_COMMAND": (
                    "psql -X -w service=app -q -c "
                    "'create table if not exists notes (id serial primary key, body text)'"
                ),
                "CLOUDBOOT_LOG_FORMAT": "console",
            }
            banner("cloudboot render --dry-run  (what would be written; password masked)")
            run([CLOUDBOOT, "render", "--dry-run"], env)
            banner("cloudboot -- python3 app.py  (render, wait over TLS, create db, hook, exec)")
            run([CLOUDBOOT, "--", sys.executable, str(top / "app.py")], env)
            banner("the rendered files (password masked)")
            for name in (".pgpass", ".pg_service.conf", "application.profile"):
                path = home / name
                print(f"--- {path} ({oct(path.stat().st_mode & 0o777)})")
                print(masked(path.read_text()), end="")
            banner("cloudboot check  (what an operator runs in `copilot svc exec`)")
            run([CLOUDBOOT, "check"], env)
            banner("psql through the rendered service and passfile")
            run(
                ["psql", "-X", "-w", "service=app", "-c", "select 'hello from psql' as msg"],
                {**env, "PGSERVICEFILE": str(home / ".pg_service.conf")},
            )


if __name__ == "__main__":
    main()
