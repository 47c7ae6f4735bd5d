"""``classifier schema``: the flow record schema as the README's Markdown table."""

from __future__ import annotations

import argparse

from ..exitcodes import Exit
from ..outputs import TextOutput
from ..record import schema_markdown


def run_schema(args: argparse.Namespace) -> int:
    with TextOutput(None) as out:
        out.write(schema_markdown() + "\n")
    return Exit.OK
