"""Flow records as Parquet: one file per part, with the Arrow schema of the record schema.

``record.SCHEMA`` is the one definition of a record; the Arrow schema is derived from it, so a
new key reaches Parquet without a second list to keep in step. Arrays of strings become
``list<string>``, the two arrays of objects (``provisions``, ``evidence``) lists of structs;
pandas, DuckDB and Spark read the parts of a directory as one table. pyarrow comes with the
optional extra ``dask`` and is imported only here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import OutputError, UserError
from .record import SCHEMA

NEEDS_EXTRA = "pip install 'classifier[dask]' (or, in a checkout, pip install -e '.[dask]')"
ROWS_PER_GROUP = 8192


def require_pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet  # the submodule must be loaded
    except ImportError:
        raise UserError(f"--format parquet needs pyarrow, from the optional extra: {NEEDS_EXTRA}") from None
    return pa


def arrow_schema() -> Any:
    """The Arrow schema of a flow record (``record.SCHEMA``, key for key, in order)."""
    pa = require_pyarrow()
    text = pa.string()
    objects = {
        "provisions": pa.struct(
            [
                ("id", text),
                ("category", text),
                ("status", text),
                ("effective", text),
                ("event", text),
                ("unenforced", text),
                ("reason", text),
            ]
        ),
        "evidence": pa.struct([("kind", text), ("value", text), ("signature", text), ("source", text)]),
        "tunnel": pa.struct([("type", text), ("src", text), ("dst", text), ("id", pa.int64())]),
        "vlan": pa.int64(),
    }
    scalars = {"string": text, "integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_()}
    fields = []
    for key, (kind, _meaning) in SCHEMA.items():
        base, _, null = kind.partition("|")
        if base == "array":
            fields.append(pa.field(key, pa.list_(objects.get(key, text)), nullable=null == "null"))
        else:
            fields.append(pa.field(key, scalars[base], nullable=null == "null"))
    return pa.schema(fields)


def _cannot_write(path: str, err: OSError) -> OutputError:
    """One line as every output's failure reads ("cannot write PATH: No space left on device"):
    pyarrow's own text wraps the OS error in its C++ call's words."""
    reason = os.strerror(err.errno) if err.errno else str(err)
    return OutputError(f"cannot write {path}: {reason}")


def part_name(number: int) -> str:
    return f"part-{number:05d}.parquet"


def check_directory(path: str) -> None:
    """Refuse a directory that already holds parts (they would be overwritten or mixed), or a
    path that is not a directory; create it if missing."""
    d = Path(path)
    if d.exists() and not d.is_dir():
        raise UserError(f"-o {path}: with --format parquet, -o names a directory (one part per task)")
    if d.is_dir() and any(d.glob("part-*.parquet")):
        raise UserError(f"-o {path}: already holds part-*.parquet files: refusing to overwrite or mix them")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _cannot_write(path, err) from None


class ParquetPartWriter:
    """Writes records to one Parquet file, a row group every ``ROWS_PER_GROUP`` records."""

    def __init__(self, path: str) -> None:
        pa = require_pyarrow()
        self._pa = pa
        self.path = path
        self.schema = arrow_schema()
        self.rows = 0
        self._rows: list[dict] = []
        try:
            self._writer = pa.parquet.ParquetWriter(path, self.schema)
        except OSError as err:
            raise _cannot_write(path, err) from None

    def write(self, record: dict) -> None:
        self._rows.append(record)
        if len(self._rows) >= ROWS_PER_GROUP:
            self._flush()

    def _flush(self) -> None:
        if not self._rows:
            return
        table = self._pa.Table.from_pylist(self._rows, schema=self.schema)
        self._rows = []
        try:
            self._writer.write_table(table)
        except OSError as err:
            raise _cannot_write(self.path, err) from None
        self.rows += table.num_rows

    def close(self) -> None:
        """Write what is left and the footer (a part without it is unreadable)."""
        self._flush()
        try:
            self._writer.close()
        except OSError as err:
            raise _cannot_write(self.path, err) from None
