"""The library stays usable without Prefect: importing any part of it loads no Prefect module."""

import subprocess
import sys

LIBRARY_MODULES = [
    "featurestore", "featurestore.store", "featurestore.datasets", "featurestore.ingest", "featurestore.backbones",
    "featurestore.extract", "featurestore.classifiers", "featurestore.evaluation", "featurestore.cli",
]


def test_library_imports_no_prefect():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in LIBRARY_MODULES)
            + "print(sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
