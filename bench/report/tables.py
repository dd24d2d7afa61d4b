"""The bench's two table formats, written (and the CSV header read) in one place.

- Markdown: ``markdown_table(headers, rows, align)`` (or ``markdown_lines`` for a report built as
  a list of lines): ``| a | b |`` rows under a ``|---|---:|`` alignment row; a ``|`` inside a
  cell is escaped (``\\|``) so it cannot split the cell.
- CSV with metadata: ``csv_with_metadata(rows, columns, meta)``: one ``# key: JSON`` line per
  metadata key (sorted) above a plain CSV table, read back with ``read_metadata`` (and by
  ``pandas.read_csv(path, comment="#")``). ``csv_text`` is the same table under any comment
  lines, cell format and line ending (results/perf/perf.csv keeps its own ``# key=value`` lines).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

# one character per column: "-" no colon (renderer's default), "l" left, "r" right, "c" centre
ALIGN_RULES = {"-": "---", "l": ":---", "r": "---:", "c": ":---:"}


def _md_cell(value) -> str:
    return str(value).replace("|", "\\|")


def _md_row(cells) -> str:
    return "| " + " | ".join(_md_cell(c) for c in cells) + " |"


def markdown_lines(headers: Sequence, rows: Iterable[Sequence],
                   align: str | Sequence[str] | None = None) -> list[str]:
    """The lines of a Markdown table: header, alignment row, one line per row.

    ``align``: one of ``- l r c`` per column (a string such as ``"--rrr"`` or a sequence);
    None: ``---`` everywhere. Cells are ``str()``-ed; a row of another length than ``headers``
    is a ValueError (it would shift every column after it).
    """
    n = len(headers)
    align = "-" * n if align is None else align
    if len(align) != n or any(a not in ALIGN_RULES for a in align):
        raise ValueError(f"align: need one of {' '.join(ALIGN_RULES)} per column ({n}), "
                         f"got {align!r}")
    lines = [_md_row(headers), "|" + "".join(ALIGN_RULES[a] + "|" for a in align)]
    for i, row in enumerate(rows):
        row = list(row)
        if len(row) != n:
            raise ValueError(f"row {i}: {len(row)} cells for {n} columns: {row!r}")
        lines.append(_md_row(row))
    return lines


def markdown_table(headers: Sequence, rows: Iterable[Sequence],
                   align: str | Sequence[str] | None = None) -> str:
    """``markdown_lines`` joined by newlines (no trailing newline)."""
    return "\n".join(markdown_lines(headers, rows, align))


def csv_cell(value):
    """Floats as ``repr`` (round-trips exactly); None and missing values empty; the rest as is."""
    if isinstance(value, float):
        return repr(value)
    return "" if value is None else value


def metadata_lines(meta: dict) -> list[str]:
    """``# key: JSON`` per key of ``meta``, keys sorted: the header ``read_metadata`` reads."""
    return [f"# {key}: {json.dumps(meta[key], sort_keys=True)}" for key in sorted(meta)]


def csv_text(rows: Iterable[dict], columns: Sequence[str], comments: Iterable[str] = (),
             cell: Callable[[object], object] = csv_cell, lineterminator: str = "\n") -> str:
    """``comments`` (each a line, ``\\n``-terminated) above a CSV table of ``columns``.

    Each row gives ``cell(row.get(column))`` per column (keys outside ``columns`` are ignored);
    ``lineterminator`` ends the CSV lines (the csv module's own default is ``"\\r\\n"``).
    """
    buf = io.StringIO()
    for line in comments:
        buf.write(f"{line}\n")
    writer = csv.writer(buf, lineterminator=lineterminator)
    writer.writerow(columns)
    for r in rows:
        writer.writerow([cell(r.get(k)) for k in columns])
    return buf.getvalue()


def csv_with_metadata(rows: Iterable[dict], columns: Sequence[str], meta: dict) -> str:
    """The bench's table files: ``metadata_lines(meta)``, then the CSV (``\\n`` line ends)."""
    return csv_text(rows, columns, comments=metadata_lines(meta))


def write_csv_tables(out: Path, tables: Iterable[tuple[str, list, Sequence[str]]],
                     meta: dict) -> None:
    """Each ``(file name, rows, columns)`` as ``out/<file name>``, a ``csv_with_metadata``
    table under the same ``meta``, written atomically (a report's CSV files)."""
    from common.fileio import atomic_write_bytes

    for name, rows, columns in tables:
        atomic_write_bytes(Path(out) / name, csv_with_metadata(rows, columns, meta).encode())


def read_metadata(csv_path: Path) -> dict:
    """The ``# key: JSON`` lines on top of a ``csv_with_metadata`` file, as a dict (a value that
    is not JSON is kept as its stripped text)."""
    meta = {}
    for line in Path(csv_path).read_text().splitlines():
        if not line.startswith("#"):
            break
        key, _, value = line[1:].strip().partition(":")
        try:
            meta[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            meta[key.strip()] = value.strip()
    return meta
