"""The ``featurestore`` command line.

Each command group lives in its own module that exposes ``register(app)``; this module only
assembles them and turns ``FeatureStoreError`` into one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import importlib
import sys

COMMAND_MODULES = (
    "featurestore.cli.store_commands",
    "featurestore.cli.datasets_commands",
    "featurestore.cli.extract_commands",
    "featurestore.cli.evaluate_commands",
    "featurestore.cli.pipeline_commands",
)

from featurestore.errors import stopped_while_starting

# Ctrl-C while the command line loads (typer, pandas, h5py, Prefect: ~0.6 s) stops it before
# anything ran: said as a stopped command says it, not as a traceback through the import machinery.
try:
    import typer
    # typer carries its own copy of click, whose errors are not the installed click's
    from typer._click import Command
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

    from featurestore.errors import FeatureStoreError, InvalidOption, exit_on_error

    app = typer.Typer(
        name="featurestore",
        help="Transfer-learning feature store: inspect stores, list datasets and backbones, run the flows.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for _module in COMMAND_MODULES:
        importlib.import_module(_module).register(app)
except KeyboardInterrupt:
    stopped_while_starting()


def _run(command: Command, argv: list[str] | None, prog_name: str) -> None:
    """Run ``command`` and exit with its code; a bad option is one line, ``error: <click's message>;
    see `<command> --help```, exit 2, as every other error (click printed a usage box)."""
    with exit_on_error():
        try:
            code = command.main(args=argv, prog_name=prog_name, standalone_mode=False)
        except NoArgsIsHelpError as error:  # a bare group or command: its help, as before
            error.show()
            sys.exit(error.exit_code)
        except UsageError as error:
            where = error.ctx.command_path if error.ctx else prog_name
            raise InvalidOption(f"{error.format_message().rstrip('.')}; see `{where} --help`") from None
        except ClickException as error:
            raise FeatureStoreError(error.format_message()) from None
    # click returns the exit code of --help or typer.Exit (Ctrl-C's 130 too), else the command's
    # return value (None)
    sys.exit(code if isinstance(code, int) else 0)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point; ``argv`` defaults to the process's arguments."""
    _run(typer.main.get_command(app), argv, "featurestore")


def run_command(command: str, argv: list[str] | None = None, *, module: str) -> None:
    """``featurestore COMMAND ARGV...``: the entry point of ``python -m <module>``, so a flow's
    module and its CLI command take one set of options; its help and usage errors name the
    module. ``argv`` defaults to the process's."""
    _run(typer.main.get_command(app).commands[command], argv, f"python -m {module}")
