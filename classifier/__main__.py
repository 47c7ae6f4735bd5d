"""``python -m classifier`` and the ``classifier`` command (pyproject's script entry point)."""

import sys

from .startup import loading


def main() -> int:
    """The command line, imported inside ``loading()``: its imports are a burst of long-lived
    objects, during which the collector would run over and over and free nothing."""
    with loading():
        from .cli import main as run

    return run()


if __name__ == "__main__":
    sys.exit(main())
