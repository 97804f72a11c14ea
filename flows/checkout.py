"""The pull step of ``prefect.yaml``: a worker runs the flows of the checkout named by ``$FEATURESTORE_CHECKOUT``.

Prefect's own ``set_working_directory`` step took an unset variable for an empty path and went
on: a run then crashed with four copies of a ``FileNotFoundError`` traceback naming a temporary
directory, or ran whatever flows the worker's Python found installed, and nothing said which
variable was missing. This step says so, in the worker's output and in the run's own logs, and
the run stops there.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from uuid import UUID

from featurestore.errors import FeatureStoreError

ENV_CHECKOUT = "FEATURESTORE_CHECKOUT"


class CheckoutNotFound(FeatureStoreError):
    """The worker was started without a featurestore checkout to run the flows of."""


def enter_checkout() -> dict[str, str]:
    """Change into the checkout named by ``$FEATURESTORE_CHECKOUT``; return it as ``directory``.

    ``CheckoutNotFound`` if the variable is unset or names no folder holding ``prefect.yaml``: the
    run then fails on its first step, with a message that says how to start the worker.
    """
    directory = os.environ.get(ENV_CHECKOUT, "")
    if not directory or not (Path(directory) / "prefect.yaml").is_file():
        found = f"is {directory!r}, not a featurestore checkout" if directory else "is not set on this worker"
        error = CheckoutNotFound(f"${ENV_CHECKOUT} {found}; start the worker as `{ENV_CHECKOUT}=/path/to/featurestore "
                                 "prefect worker start --pool featurestore`")
        _log_to_the_run(f"{type(error).__name__}: {error}")
        raise error
    os.chdir(directory)
    return {"directory": directory}


def _log_to_the_run(message: str) -> None:
    """Add ``message`` to the logs of the flow run this process executes (``prefect flow-run logs``):
    a pull step runs before Prefect attaches the run's logger, so its error reached only the worker's
    output, and the run's logs held Prefect's own traceback of what failed after it."""
    run_id = os.environ.get("PREFECT__FLOW_RUN_ID")
    if not run_id:
        return
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import LogCreate

    try:
        with get_client(sync_client=True) as client:
            client.create_logs([LogCreate(name="featurestore.checkout", level=logging.ERROR, message=message,
                                          timestamp=datetime.now(timezone.utc), flow_run_id=UUID(run_id))])
    except Exception as error:  # noqa: BLE001 - the step's own error matters more; the worker shows it anyway
        logging.getLogger(__name__).warning("could not add the reason to the run's logs (%s)", error)
