"""``classifier policy``: each provision's status at an instant, or every change in order."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..exitcodes import Exit
from ..outputs import TextOutput
from ..policy import Policy, describe
from ..signatures import shipped_directory


def run_policy(args: argparse.Namespace) -> int:
    directory = Path(args.policy) if args.policy else shipped_directory() / "policy"
    policy = Policy.load(directory)
    with TextOutput(None) as out:
        if args.timeline:
            for instant, provision, change in policy.timeline(args.view):
                out.write(f"{instant}  {provision}  {change}\n")
            return Exit.OK
        when = args.as_of if args.as_of is not None else time.time()
        for line in describe(policy, when, args.view):
            out.write(line + "\n")
    return Exit.OK
