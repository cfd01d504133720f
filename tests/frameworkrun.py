"""The real framework clients as long-lived processes: one per consumer, many cases each.

Each client (``tests/frameworks/``: Node, Python, Ruby, PHP) reads cases as JSON lines on
stdin — ``{"id", "engine", "url_env", "env"}``, ``env`` being the variables cloudboot
rendered — logs in the way an application does (``new pg.Client({connectionString})``,
``dj_database_url.parse`` + a Django connection, ``establish_connection(url)``, Laravel's
Capsule with ``'url' => …``) and answers one JSON line: ``{"id", "ok": true, "user",
"database", "ssl"}`` as the SERVER reports them (``pg_stat_ssl`` of the backend,
MariaDB's ``Ssl_version``), or ``{"id", "ok": false, "error"}``.

Variables a runtime reads only at start (``NODE_EXTRA_CA_CERTS``) cannot change per
case: the cases are grouped by their values and each group gets a process of its own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from leakguard import assert_no_secret
from readers import clean_env

FRAMEWORKS = Path(__file__).parent / "frameworks"
NODE_DIR = FRAMEWORKS / "node"
STARTUP_VARIABLES = ("NODE_EXTRA_CA_CERTS",)
"""Read by the runtime once, at start."""


@dataclass(frozen=True)
class Case:
    """One login to try: the rendered variables and which one is the URL (``None`` when
    the client reads its own variables, such as libpq's ``PG*``)."""

    engine: str
    env: Mapping[str, str]
    url_env: str | None


def command(language: str, client: str) -> list[str]:
    """The argv of the long-lived client ``client`` in ``language``."""
    if language == "node":
        if not (NODE_DIR / "node_modules").is_dir():
            pytest.fail(f"run `npm ci` in {NODE_DIR} (make test does)", pytrace=False)
        return [_program("node", "nodejs"), str(NODE_DIR / "clients.js"), client]
    if language == "python":
        return [sys.executable, str(FRAMEWORKS / "python_clients.py"), client]
    if language == "ruby":
        return [_program("ruby", "ruby"), str(FRAMEWORKS / "ruby" / "clients.rb")]
    return [_program("php", "php-cli"), str(FRAMEWORKS / "php" / "clients.php")]


def _program(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: install the Debian package {package}")
    return path


def run_cases(argv: Sequence[str], cases: Sequence[Case], *, home: Path) -> list[dict[str, Any]]:
    """Every case's answer, in order; one process per group of start-up variables, the
    groups side by side (a refusal can take a client's whole connect timeout)."""
    groups: dict[tuple[tuple[str, str], ...], list[int]] = {}
    for index, case in enumerate(cases):
        key = tuple((n, case.env[n]) for n in STARTUP_VARIABLES if n in case.env)
        groups.setdefault(key, []).append(index)
    with ThreadPoolExecutor(max_workers=len(groups) or 1) as pool:
        results = pool.map(lambda group: _run_group(argv, cases, *group, home=home), groups.items())
        answers = {index: answer for result in results for index, answer in result.items()}
    return [answers[i] for i in range(len(cases))]


def _run_group(
    argv: Sequence[str],
    cases: Sequence[Case],
    startup: tuple[tuple[str, str], ...],
    indexes: list[int],
    *,
    home: Path,
) -> dict[int, dict[str, Any]]:
    lines = []
    for index in indexes:
        case = cases[index]
        env = {n: v for n, v in case.env.items() if n not in STARTUP_VARIABLES}
        request = {"id": index, "engine": case.engine, "url_env": case.url_env, "env": env}
        lines.append(json.dumps(request) + "\n")
    result = subprocess.run(
        list(argv),
        input="".join(lines),
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=clean_env(home, dict(startup)),
        cwd=home,
        timeout=300,
        check=False,
    )
    # Whatever a client prints must not show a password (the answers hold errors).
    assert_no_secret(result.stderr)
    assert_no_secret(result.stdout)
    answers: dict[int, dict[str, Any]] = {}
    for line in result.stdout.splitlines():
        answer = json.loads(line)
        answers[int(answer.pop("id"))] = answer
    missing = [i for i in indexes if i not in answers]
    assert not missing, f"{argv} answered no line for {len(missing)} cases: {result.stderr}"
    return answers
