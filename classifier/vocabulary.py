"""The words signatures and policy share: apps, categories of service, and host rule roles.

One file, ``signatures/policy/vocabulary.toml``, is their single source. The policy checks every
provision's app and category against it and the signatures check every app id and rule role, so
a typo cannot create a rule or provision that nothing will ever match. The code's own constants
(attribution's category order and role-to-category map) are checked against it by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classifier.datafile import read_toml
from classifier.errors import DataError, SignatureError
from classifier.validate import TEXT, WORD, Field, Schema, list_of, only_keys, optional

FILE_NAME = "vocabulary.toml"


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """The allowed words, in the order the file gives them."""

    apps: tuple[str, ...]
    categories: tuple[str, ...]
    roles: tuple[str, ...]
    path: str


SCHEMA = Schema(
    "vocabulary",
    (
        Field("apps", list_of(WORD)),
        Field("categories", list_of(WORD)),
        Field("roles", list_of(WORD)),
        optional("note", TEXT),
    ),
)


def from_table(raw: Any, path: str, error: type[DataError] = SignatureError) -> Vocabulary:
    """The ``[vocabulary]`` table of ``path``; no word may be listed twice."""
    entry = SCHEMA.check(raw, path, error=error)
    for key in ("apps", "categories", "roles"):
        values = entry[key]
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise entry.fail(f"lists {', '.join(twice)} more than once", key)
    return Vocabulary(entry["apps"], entry["categories"], entry["roles"], path)


def load(path: Path, error: type[DataError] = SignatureError) -> Vocabulary:
    """Read a vocabulary file: exactly one ``[vocabulary]`` table."""
    doc = read_toml(path, error, cached=True)
    only_keys(doc, ("vocabulary",), str(path), error)
    return from_table(doc["vocabulary"], str(path), error)
