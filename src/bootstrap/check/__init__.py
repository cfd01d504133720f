"""``cloudboot check``: diagnose the way to the database one step at a time.

Steps, in order (:mod:`.steps`): ``sources`` (settings and credentials load and render;
variable names only), ``dns``, ``tcp``, ``tls`` (handshake and certificate, done by
cloudboot itself so that an untrusted certificate can still be described, see
:mod:`.certificates`), ``auth``, ``database``, ``server``. The first failing step ends
the check; its exit code is the class of the failure (69 unreachable or not there yet,
77 refused, 78 configuration). :mod:`.report` holds the result and its two renderings.
"""

from __future__ import annotations

from .report import Report, Step
from .steps import run_check

__all__ = ["Report", "Step", "run_check"]
