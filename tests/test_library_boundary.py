"""The library stays usable without Prefect: importing any part of it loads no Prefect module."""

import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "featurestore"

# Imports every module of the package, then names the modules it imported and any Prefect module loaded.
IMPORT_ALL = """
import contextlib, importlib, io, json, pkgutil, sys
import featurestore
imported = []
sys.argv = ["featurestore", "--help"]
for info in pkgutil.walk_packages(featurestore.__path__, "featurestore."):
    if info.name.endswith(".__main__"):
        # An entry module runs its command when imported: --help is the run that does nothing.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            importlib.import_module(info.name)
    else:
        importlib.import_module(info.name)
    imported.append(info.name)
prefect = sorted(m for m in sys.modules if m == "prefect" or m.startswith("prefect."))
print(json.dumps({"imported": imported, "prefect": prefect}))
"""


def _modules_on_disk() -> set[str]:
    names = set()
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names - {"featurestore"}


def test_importing_every_library_module_loads_no_prefect():
    result = subprocess.run([sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(report["imported"]) == _modules_on_disk()
    assert report["prefect"] == []
