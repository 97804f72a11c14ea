"""Gains of ensembles over the best single backbone, and the one-line summary per dataset."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: how tables and pictures mark the in-sample stacking, whose meta-classifier saw its training rows' answers
LEAKY_SUFFIX = " (in-sample, leaky)"


#: decimals of ``gain_over_best_single`` (accuracy points): far below one test row of any test split
GAIN_DECIMALS = 6


def single_name(record: dict[str, Any]) -> str:
    """``'<model> + <classifier>'``, how a single answer is named in summaries."""
    return f"{record['model']} + {record['classifier']}"


def display_name(record: dict[str, Any]) -> str:
    """The classifier name for ensembles, ``model + classifier`` for single answers."""
    return record["classifier"] if record["kind"] == "ensemble" else single_name(record)


def ensemble_members(record: dict[str, Any]) -> list[str]:
    """The backbones an ensemble record combines: its ``members``, or, in runs written before records
    carried them, its model name split on ``+`` (wrong where a backbone's name holds a ``+``)."""
    return record["members"] if "members" in record else record["model"].split("+")


def add_gains(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Set ``gain_over_best_single`` (accuracy points) and ``best_single`` on every record.

    An ensemble is compared with the best single answer of the same dataset among its own
    backbones; single answers get ``None`` for both. Gains are rounded to ``GAIN_DECIMALS``.
    """
    for record in records:
        record["gain_over_best_single"] = None
        record["best_single"] = None
        if record["kind"] != "ensemble":
            continue
        members = set(ensemble_members(record))
        singles = [
            r for r in records
            if r["kind"] == "single" and r["dataset"] == record["dataset"] and r["model"] in members
        ]
        if singles:
            best = max(singles, key=lambda r: r["accuracy"])
            gain = 100 * (record["accuracy"] - best["accuracy"])
            # rounded where it is made, so results.json, results.csv and the tables agree: the float
            # difference of two accuracies carries noise (2.0000000000000018 for 0.75 - 0.73)
            record["gain_over_best_single"] = round(gain, GAIN_DECIMALS)
            record["best_single"] = single_name(best)
    return records


def best_record(records: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The most accurate leak-free record (ties: the first), or ``None``."""
    candidates = [r for r in records if r["leak_free"]]
    return max(candidates, key=lambda r: r["accuracy"]) if candidates else None


def summary_line(records: list[dict[str, Any]]) -> str:
    """``"best: stacking_cv 91.2% (+1.1 over efficientnet_lite2 + logreg)"`` for one dataset's records."""
    best = best_record(records)
    if best is None:
        return "no results"
    line = f"best: {display_name(best)} {100 * best['accuracy']:.1f}%"
    if best.get("gain_over_best_single") is not None:
        line += f" ({best['gain_over_best_single']:+.1f} over {best['best_single']})"
    return line


def summaries(records: list[dict[str, Any]]) -> dict[str, str]:
    """One summary line per dataset, in order of first appearance."""
    datasets = dict.fromkeys(r["dataset"] for r in records)
    return {d: summary_line([r for r in records if r["dataset"] == d]) for d in datasets}
