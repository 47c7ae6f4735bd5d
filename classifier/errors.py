"""Error types shared by every stage.

Two kinds of trouble exist and they are handled differently:

* ``UserError``: the run cannot go on as asked (a broken signature file, a bad flag). The CLI
  prints its message as one line and exits with status 2; no traceback.
  Its kind ``OutputError`` is an output that could not be written (disk full, I/O error, a
  missing directory): the message names the output and the OS error; exit status 4.
* ``MalformedError``: one packet, record or message is not what it claims to be. The stage that
  meets it counts it by reason and carries on with the rest of the input.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user must fix; ``str()`` is a complete one-line explanation."""


class DataError(UserError):
    """A data file (signatures, policy, gateway config) is broken.

    One format for all of them, ``file: entry: field: problem`` (entry and field when known),
    so whoever edits the file sees which line to fix whatever loader found the fault.
    """

    def __init__(self, path: str, entry: str | None, problem: str, field: str | None = None) -> None:
        self.path = path
        self.entry = entry
        self.field = field
        self.problem = problem
        super().__init__(": ".join(part for part in (path, entry, field, problem) if part))


class SignatureError(DataError):
    """A signature or policy file failed validation; names the file and the entry."""


class OutputError(UserError):
    """Writing an output failed; ``str()`` names the output and the OS error in one line."""


class MalformedError(Exception):
    """Bytes that do not parse as the protocol they claim to be.

    ``layer`` is the protocol (``tls``, ``dns``, ``ipv4``...), ``field`` the element that is wrong
    and ``detail`` a short human explanation. ``reason`` is the stable counter key.
    """

    __slots__ = ("detail", "field", "layer")

    def __init__(self, layer: str, field: str, detail: str) -> None:
        self.layer = layer
        self.field = field
        self.detail = detail
        super().__init__(f"{layer}: {field}: {detail}")

    @property
    def reason(self) -> str:
        return f"{self.layer}.{self.field}"
