"""``python -m classifier`` is the ``classifier`` command."""

import sys

from .startup import loading

with loading():  # the command line's imports: no collection during the burst (classifier.startup)
    from .cli import main

sys.exit(main())
