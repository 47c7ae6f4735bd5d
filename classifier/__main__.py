"""``python -m classifier`` is the ``classifier`` command."""

import sys

from .cli import main

sys.exit(main())
