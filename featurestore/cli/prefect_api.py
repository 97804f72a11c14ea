"""The check every command that starts a flow makes first: is the configured Prefect API up?"""

from __future__ import annotations

import requests

from featurestore.errors import FeatureStoreError


class PrefectApiDown(FeatureStoreError):
    """PREFECT_API_URL names a server that does not answer."""


def check_prefect_api() -> None:
    """Fail with one line if ``PREFECT_API_URL`` is set (in the environment or the Prefect profile,
    ``prefect config set``) but its server does not answer.

    Prefect would otherwise fail inside the flow run with a long traceback about connections.
    """
    # Imported here: the library and the other commands load no Prefect; this runs just before a flow.
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return
    try:
        requests.get(f"{url.rstrip('/')}/health", timeout=5).raise_for_status()
    except requests.RequestException as error:
        raise PrefectApiDown(
            f"Prefect API {url} does not answer ({type(error).__name__}); start it with "
            "`prefect server start --host 127.0.0.1` or unset PREFECT_API_URL to use a temporary local server"
        ) from None
