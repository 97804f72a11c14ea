"""How every CLI command prints: a rich table for people, JSON for machines."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from featurestore.errors import InvalidOption

JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")
ROOT_OPTION = typer.Option(None, "--root", help="Featurestore root (default: $FEATURESTORE_HOME or ~/.local/share/featurestore).")

# Piped output is read by people in logs and CI, where rich's 80-column default folds every table.
console = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 200)


def split_names(values: list[str] | None, option: str) -> list[str]:
    """Names given repeated or comma-separated: ``["a,b", "c"]`` -> ``["a", "b", "c"]``; ``[]`` when
    ``option`` was not given. Given but naming nothing (``-d ""``, ``-d ,,``) is ``InvalidOption``:
    a script whose ``$DATASET`` came out empty did nothing, or ran the defaults, and exited 0."""
    names = [v.strip() for value in values or [] for v in value.split(",") if v.strip()]
    if values and not names:
        raise InvalidOption(f"{option} {','.join(values)!r}: give at least one name")
    return names


def _plain(value):
    """A JSON-safe version of ``value`` (numpy scalars, timestamps, NaN)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def print_json(value) -> None:
    """Print ``value`` as indented JSON on stdout."""
    typer.echo(json.dumps(_plain(value), indent=2))


def records(frame: pd.DataFrame) -> list[dict]:
    """A DataFrame as a list of JSON-safe dicts."""
    return [_plain(row) for row in frame.astype(object).where(frame.notna(), None).to_dict("records")]


def human_bytes(size: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def print_table(rows: Iterable[Mapping], columns: Sequence[str], title: str | None = None) -> None:
    """Print mappings as a table with the given columns; missing values show as '-'."""
    table = Table(title=title, show_lines=False)
    for position, column in enumerate(columns):
        table.add_column(column, overflow="fold", no_wrap=position < len(columns) - 1)
    for row in rows:
        table.add_row(*("-" if row.get(c) is None else str(row.get(c)) for c in columns))
    console.print(table)


def emit(frame: pd.DataFrame, columns: Sequence[str], as_json: bool, title: str | None = None) -> None:
    """Print a DataFrame as JSON records or as a table of ``columns``."""
    if as_json:
        print_json(records(frame))
    else:
        print_table(records(frame), columns, title)
