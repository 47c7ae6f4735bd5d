"""Where the optional compiled twins are found: one rule for every extension setup.py builds.

An extension is used when it was built, holds every function its callers need (one built from an
older .pyx may lack some: then it counts as not built) and CLASSIFIER_PURE_PYTHON is not set (it
forces the pure-Python twins, e.g. to compare the two). docs/ARCHITECTURE.md says which they are.
"""

from __future__ import annotations

import importlib
import os
from typing import Any


def compiled_function(module: str, name: str, *also: str) -> Any | None:
    """``classifier.<module>.<name>``, or None when that extension is not built, lacks ``name``
    or one of ``also`` (the functions used with it), or is refused."""
    if os.environ.get("CLASSIFIER_PURE_PYTHON"):
        return None
    try:
        found = importlib.import_module(f"classifier.{module}")
    except ImportError:
        return None
    if not all(hasattr(found, wanted) for wanted in (name, *also)):
        return None
    return getattr(found, name)


def compiled_status(parts: dict[str, Any], name_them: bool = False) -> str:
    """How much of ``parts`` (what it does -> its compiled twin or None) runs compiled, in words for
    ``classifier --version``: a user can tell whether they got the compiled speed, and if not why."""
    if all(parts.values()):
        return "compiled (Cython)" + (": " + ", ".join(parts) if name_them else "")
    if os.environ.get("CLASSIFIER_PURE_PYTHON"):
        return "pure Python (CLASSIFIER_PURE_PYTHON is set)"
    missing = ", ".join(name for name, compiled in parts.items() if compiled is None)
    return (
        f"{'partly compiled' if any(parts.values()) else 'pure Python'} (not built: {missing}; "
        "reinstall with a C compiler and Python headers for the compiled speed)"
    )
