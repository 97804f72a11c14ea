"""The `featurestore` store commands, run as the installed console script."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from store_fixtures import write_store

from featurestore.store import format as fmt


def cli(*args, root):
    return subprocess.run([sys.executable, "-m", "featurestore.cli", *args, "--root", str(root)],
                          capture_output=True, text=True, timeout=120)


def test_ls_show_and_rm_with_json(root):
    assert json.loads(cli("ls", "--json", root=root).stdout) == []
    write_store(root, n=30, model="a")
    write_store(root, n=30, model="b", dim=8)
    listing = json.loads(cli("ls", "--json", root=root).stdout)
    assert [(s["model"], s["rows"], s["dim"], s["complete"]) for s in listing] == [("a", 30, 32, True), ("b", 30, 8, True)]
    table = cli("ls", root=root)
    assert table.returncode == 0 and "complete" in table.stdout and "toy" in table.stdout

    shown = json.loads(cli("show", "toy", "b", "--rows", "2", "--json", root=root).stdout)
    assert shown["provenance"]["dim"] == 8 and len(shown["rows"]) == 2
    assert "weights_sha256" in cli("show", "toy", "b", root=root).stdout

    removed = cli("rm", "toy", "a", "--json", root=root)
    assert removed.returncode == 0 and json.loads(removed.stdout)["removed"][0].endswith("a.h5")
    assert [s["model"] for s in json.loads(cli("ls", "--json", root=root).stdout)] == ["b"]


def test_verify_passes_then_catches_planted_nan_and_truncation(root):
    good = write_store(root, n=40, model="good")
    nan = write_store(root, n=40, model="nan")
    ok = cli("verify", "toy", "good", "--json", root=root)
    assert ok.returncode == 0 and json.loads(ok.stdout)[0]["ok"] is True

    with h5py.File(nan, "r+") as file:
        file[fmt.MATRIX][7, 3] = np.nan
    result = cli("verify", "--json", root=root)
    assert result.returncode == 1
    reports = {r["path"]: r for r in json.loads(result.stdout)}
    assert reports[str(good)]["ok"] and "1 rows contain NaN or inf (first: row 7)" in reports[str(nan)]["problems"]

    truncated = write_store(root, n=40, model="cut")
    truncated.write_bytes(truncated.read_bytes()[:5000])
    result = cli("verify", "toy", "cut", root=root)
    assert result.returncode == 1 and "truncated" in result.stdout and "FAILED" in result.stdout


@pytest.mark.parametrize("args", [("show", "toy", "nothing"), ("rm", "toy", "nothing"), ("verify", "nope")])
def test_errors_are_one_line_without_traceback(root, args):
    result = cli(*args, root=root)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")


def test_help_everywhere():
    for command in ([], ["ls"], ["show"], ["verify"], ["rm"]):
        result = subprocess.run([sys.executable, "-m", "featurestore.cli", *command, "--help"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "Usage" in result.stdout
