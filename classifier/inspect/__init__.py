"""Inspectors: pure functions from the bytes of one direction of a flow to protocol facts.

Each submodule (``tls``, ``http``, ``dns``) returns ``None`` when it needs more bytes, a frozen
fact dataclass when it has seen enough, and raises only ``classifier.errors.MalformedError``
for bytes that are not (or no longer) the protocol. Hostnames found by any inspector go
through :func:`normalize_hostname` so the attribute stage compares like with like.
"""

from __future__ import annotations

__all__ = ["normalize_hostname"]

# Bytes kept as-is (lowercased): printable ASCII except the backslash, which is escaped so an
# escape sequence in the output can never be confused with a literal byte of the input.
_PLAIN = bytes(b for b in range(0x21, 0x7F) if b != 0x5C)
_LOWER = bytes.maketrans(bytes(range(0x41, 0x5B)), bytes(range(0x61, 0x7B)))
_ESCAPED = tuple(chr(b).lower() if b in _PLAIN else f"\\x{b:02x}" for b in range(256))


def normalize_hostname(raw: bytes) -> str:
    """Lowercase ``raw``, strip one trailing dot, and escape anything not printable ASCII.

    Hostnames on the wire are supposed to be ASCII but are attacker-controlled; escaping
    (``\\xNN``) rather than dropping keeps odd bytes visible as evidence without ever
    raising ``UnicodeDecodeError``.
    """
    if raw.translate(None, _PLAIN):  # something outside the plain set: slow path
        text = "".join([_ESCAPED[b] for b in raw])
    else:
        text = raw.translate(_LOWER).decode("ascii")
    return text[:-1] if text.endswith(".") else text


def escape_label(label: bytes) -> str:
    """Like :func:`normalize_hostname` for one DNS label, also escaping an embedded ``.``.

    A label may legally contain a dot byte; escaping it keeps ``a.b`` (two labels) and
    ``a\\x2eb`` (one label) distinct.
    """
    return "".join([_ESCAPED[b] if b != 0x2E else "\\x2e" for b in label])
