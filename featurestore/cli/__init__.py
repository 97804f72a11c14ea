"""The ``featurestore`` command line.

Each command group lives in its own module that exposes ``register(app)``; this module only
assembles them and turns ``FeatureStoreError`` into one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import importlib
import sys

import typer

from featurestore.errors import exit_on_error

COMMAND_MODULES = (
    "featurestore.cli.store_commands",
    "featurestore.cli.datasets_commands",
    "featurestore.cli.backbones_commands",
    "featurestore.cli.report_commands",
    "featurestore.cli.pipeline_commands",
)

app = typer.Typer(
    name="featurestore",
    help="Transfer-learning feature store: inspect stores, list datasets and backbones, run the flows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point; ``argv`` defaults to the process's arguments."""
    with exit_on_error():
        app(args=argv, prog_name="featurestore")


def run_command(command: str, argv: list[str] | None = None, *, module: str) -> None:
    """``featurestore COMMAND ARGV...``: the entry point of ``python -m <module>``, so a flow's
    module and its CLI command take one set of options; its help and usage errors name the
    module. ``argv`` defaults to the process's."""
    click_command = typer.main.get_command(app).commands[command]
    with exit_on_error():
        click_command.main(args=sys.argv[1:] if argv is None else argv, prog_name=f"python -m {module}")
