"""Intermediate tables of the ingest steps: plain arrays in an ``.npz`` (never a pickle)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from featurestore.datasets.manifest import text_values
from featurestore.files import written_aside


def save_table(path: Path, frame: pd.DataFrame, meta: dict) -> str:
    """Write an intermediate table (plain arrays in an ``.npz``, no pickle) with its metadata.

    Text columns are stored as one NUL-separated UTF-8 buffer (file names cannot hold NUL):
    far cheaper to write and read back than fixed-width unicode arrays.
    """
    columns, text = {}, []
    for name in frame.columns:
        if frame[name].dtype.kind in "iu":
            columns[name] = frame[name].to_numpy(dtype=np.int64)
        else:
            columns[name] = np.frombuffer("\0".join(text_values(frame[name])).encode(), dtype=np.uint8)
            text.append(name)
    header = {"meta": meta, "text": text, "rows": len(frame), "order": list(frame.columns)}
    with written_aside(path) as partial:
        np.savez(partial, _header=np.array(json.dumps(header)), **columns)
    return str(path)


def load_table(path: str) -> tuple[pd.DataFrame, dict]:
    """Read a table written by ``save_table``: the frame and its metadata."""
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(str(data["_header"]))
        columns = {}
        for name in header["order"]:
            if name in header["text"]:
                values = data[name].tobytes().decode().split("\0") if header["rows"] else []
                # Object columns: converting to pandas' string dtype costs more than the work done on them.
                columns[name] = pd.Series(values, dtype=object)
            else:
                columns[name] = pd.Series(data[name])
    return pd.DataFrame(columns), header["meta"]
