"""Gains of ensembles over the best single backbone, and the one-line summary per dataset."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

#: how tables and pictures mark the in-sample stacking, whose meta-classifier saw its training rows' answers
LEAKY_SUFFIX = " (in-sample, leaky)"


#: decimals of ``gain_over_best_single`` (accuracy points): far below one test row of any test split
GAIN_DECIMALS = 6


def decimal_text(value: float, decimals: int, scale: int = 0) -> str:
    """``value * 10**scale`` with ``decimals`` decimals, rounded half up from ``value``'s shortest
    decimal form: ``decimal_text(0.8555, 1, scale=2)`` is ``"85.6"``, as the table's 85.55 reads.
    ``f"{100 * value:.1f}"`` rounds the float 85.549999... down, so summary and table disagreed."""
    exact = Decimal(repr(value)).scaleb(scale)
    return str(exact.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP))


def single_name(record: dict[str, Any]) -> str:
    """``'<model> + <classifier>'``, how a single answer is named in summaries."""
    return f"{record['model']} + {record['classifier']}"


def display_name(record: dict[str, Any]) -> str:
    """The classifier name for ensembles, ``model + classifier`` for single answers."""
    return record["classifier"] if record["kind"] == "ensemble" else single_name(record)


#: an ensemble's ``no_gain_reason`` where a single of its backbones was scored on other test rows
OTHER_ROWS = "singles scored on other test rows"


def same_rows(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Whether two records of one dataset were fitted and scored on the same rows.

    A dataset's stores hold the same rows; a single leaves out the rows failed in its own store, an
    ensemble those failed in any of its stores, a superset: equal counts of failed rows mean the same
    rows (test rows, and train rows the fit drew from), as they are wherever images fail in every store.
    """
    return first.get("n_failed_rows") == second.get("n_failed_rows") and first.get("n_test") == second.get("n_test")


def ensemble_members(record: dict[str, Any]) -> list[str]:
    """The backbones an ensemble record combines: its ``members``, or, in runs written before records
    carried them, its model name split on ``+`` (wrong where a backbone's name holds a ``+``)."""
    return record["members"] if "members" in record else record["model"].split("+")


def add_gains(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Set ``gain_over_best_single`` (accuracy points), ``best_single`` and ``no_gain_reason`` on every record.

    An ensemble is compared with the best single answer of the same dataset among its own
    backbones; single answers get ``None`` for all three. An ensemble whose backbones' singles were
    not all scored on its rows (``same_rows``: a store failed images the others read) gets no gain,
    and ``OTHER_ROWS`` as its ``no_gain_reason``. Gains are rounded to ``GAIN_DECIMALS``.
    """
    for record in records:
        record["gain_over_best_single"] = None
        record["best_single"] = None
        record["no_gain_reason"] = None
        if record["kind"] != "ensemble":
            continue
        members = set(ensemble_members(record))
        singles = [
            r for r in records
            if r["kind"] == "single" and r["dataset"] == record["dataset"] and r["model"] in members
        ]
        if not all(same_rows(record, single) for single in singles):
            # choosing the best single already compares accuracies, so every one must be on these rows
            record["no_gain_reason"] = OTHER_ROWS
        elif singles:
            best = max(singles, key=lambda r: r["accuracy"])
            gain = 100 * (record["accuracy"] - best["accuracy"])
            # rounded where it is made, so results.json, results.csv and the tables agree: the float
            # difference of two accuracies carries noise (2.0000000000000018 for 0.75 - 0.73)
            record["gain_over_best_single"] = round(gain, GAIN_DECIMALS)
            record["best_single"] = single_name(best)
    return records


def best_record(records: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The most accurate leak-free record (ties: the first), or ``None``: the answer the summary
    line names and the only one the heat map prints in bold."""
    candidates = [r for r in records if r["leak_free"]]
    return max(candidates, key=lambda r: r["accuracy"]) if candidates else None


def summary_line(records: list[dict[str, Any]]) -> str:
    """``"best: stacking_cv 91.2% (+1.1 over efficientnet_lite2 + logreg)"`` for one dataset's records."""
    best = best_record(records)
    if best is None:
        return "no results"
    line = f"best: {display_name(best)} {decimal_text(best['accuracy'], 1, scale=2)}%"
    if best.get("gain_over_best_single") is not None:
        gain = decimal_text(best["gain_over_best_single"], 1)
        line += f" ({'' if gain.startswith('-') else '+'}{gain} over {best['best_single']})"
    elif best.get("no_gain_reason"):
        line += f" ({best['no_gain_reason']}: no gain)"
    elif any(r.get("no_gain_reason") for r in records):
        # the best single won against ensembles scored on other rows
        line += " (ensembles scored on other test rows: no gain)"
    return line


def summaries(records: list[dict[str, Any]]) -> dict[str, str]:
    """One summary line per dataset, in order of first appearance."""
    datasets = dict.fromkeys(r["dataset"] for r in records)
    return {d: summary_line([r for r in records if r["dataset"] == d]) for d in datasets}
