"""The checks every flow makes of its list parameters, which a deployment run passes as given."""

from __future__ import annotations

from featurestore.errors import InvalidOption


def check_given(parameter: str, names: list[str] | None, noun: str, option: str, left_out: str = "") -> None:
    """One line for an empty list given as ``parameter`` (a deployment's ``-p models=[]``), which a
    flow read as "every one" or as nothing to do, and then reported success; the command line refuses
    empty lists the same way. ``None`` is the parameter left out: the flow's default, which
    ``left_out`` names where the line should offer it."""
    if names is not None and not names:
        raise InvalidOption(f"{parameter}=[]: give at least one {noun} ({option} NAME)"
                            + (f", or leave {parameter} out for {left_out}" if left_out else ""))
