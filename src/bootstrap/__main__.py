"""``python -m bootstrap`` and the ``cloudboot`` console script.

The signal handler is installed before anything heavy is imported (the CLI loads
structlog, pydantic and more: about 90 ms), so that a SIGTERM is acted on from the
first moment cloudboot's own code runs (README, "Signals"). During the imports a signal
ends the program at once (nothing has been done yet); from then on it is recorded and
every stage of the boot acts on the record.
"""

import gc

gc.disable()  # while loading: nothing loaded is garbage (cli.main freezes it, then enables)

from . import stop  # noqa: E402 - after the collector is off, on purpose

stop.install()
stop.exit_at_once(True)

import sys  # noqa: E402 - after the handler, on purpose

from .cli import main as _cli_main  # noqa: E402 - after the handler, on purpose

stop.exit_at_once(False)


def main() -> int:
    """The console script: the CLI, unless a signal came while it was being loaded."""
    requested = stop.requested()
    if requested is not None:
        return 128 + requested
    return _cli_main()


if __name__ == "__main__":
    sys.exit(main())
