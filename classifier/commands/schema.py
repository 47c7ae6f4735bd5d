"""``classifier schema``: the flow record schema as the README's table, or ``--json`` as JSON Schema."""

from __future__ import annotations

import argparse
import json

from ..exitcodes import Exit
from ..outputs import TextOutput
from ..record import schema_markdown


def run_schema(args: argparse.Namespace) -> int:
    if args.json:
        from ..recordschema import record_schemas

        text = json.dumps(record_schemas(), indent=2) + "\n"
    else:
        text = schema_markdown() + "\n"
    with TextOutput(None) as out:
        out.write(text)
    return Exit.OK
