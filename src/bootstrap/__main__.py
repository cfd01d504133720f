"""``python -m bootstrap`` and the ``cloudboot`` console script.

The signal handler is installed before anything heavy is imported (the CLI loads
structlog, pydantic and more: about 90 ms), so that a SIGTERM is acted on from the
first moment cloudboot's own code runs (README, "Signals").
"""

from . import stop

stop.install()

import sys  # noqa: E402 - after the handler, on purpose

from .cli import main  # noqa: E402 - after the handler, on purpose

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
