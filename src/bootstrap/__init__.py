"""cloudboot: turn injected database credentials into what an application reads, prove
the database is reachable over verified TLS, prepare it, and exec the server.

The library face: load settings and credentials from a mapping, render the artifacts,
plan and write them, and run the later stages of the boot. The CLI (``cloudboot``) is
built on exactly these; database drivers load only when a stage needs them.
"""

from .credentials import DatabaseCredentials, Secret
from .errors import (
    CloudbootError,
    ConfigError,
    HookError,
    Interrupted,
    ProgramError,
    RefusedError,
    UnavailableError,
    UsageError,
    WriteError,
)
from .lifecycle import Prepared, boot, migrate, prepare, wait_only, write_artifacts
from .render import FileArtifact, Rendering, render
from .settings import Hook, Settings
from .sources import load
from .write import Planned, plan, write

__version__ = "0.1.0"

__all__ = [
    "CloudbootError",
    "ConfigError",
    "DatabaseCredentials",
    "FileArtifact",
    "Hook",
    "HookError",
    "Interrupted",
    "Planned",
    "Prepared",
    "ProgramError",
    "RefusedError",
    "Rendering",
    "Secret",
    "Settings",
    "UnavailableError",
    "UsageError",
    "WriteError",
    "__version__",
    "boot",
    "load",
    "migrate",
    "plan",
    "prepare",
    "render",
    "wait_only",
    "write",
    "write_artifacts",
]
