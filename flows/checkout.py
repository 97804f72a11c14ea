"""The pull step of ``prefect.yaml``: a worker runs the flows of the checkout named by ``$FEATURESTORE_CHECKOUT``.

Prefect's own ``set_working_directory`` step took an unset variable for an empty path and went
on: a run then crashed with four copies of a ``FileNotFoundError`` traceback naming a temporary
directory, or ran whatever flows the worker's Python found installed, and nothing said which
variable was missing. This step says so, and the run stops there.
"""

from __future__ import annotations

import os
from pathlib import Path

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
        raise CheckoutNotFound(f"${ENV_CHECKOUT} {found}; start the worker as `{ENV_CHECKOUT}=/path/to/featurestore "
                               "prefect worker start --pool featurestore`")
    os.chdir(directory)
    return {"directory": directory}
