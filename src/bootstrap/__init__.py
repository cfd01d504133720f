"""cloudboot: turn injected database credentials into what an application reads, prove
the database is reachable over verified TLS, prepare it, and exec the server.

The library face: load settings and credentials from a mapping, render the artifacts,
plan and write them. The CLI (``cloudboot``) is built on exactly these.
"""

from .credentials import DatabaseCredentials, Secret
from .errors import (
    CloudbootError,
    ConfigError,
    HookError,
    Interrupted,
    RefusedError,
    UnavailableError,
    UsageError,
    WriteError,
)
from .lifecycle import Prepared, prepare
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
    "RefusedError",
    "Rendering",
    "Secret",
    "Settings",
    "UnavailableError",
    "UsageError",
    "WriteError",
    "__version__",
    "load",
    "plan",
    "prepare",
    "render",
    "write",
]
