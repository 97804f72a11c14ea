"""A writer process for the crash and concurrency tests: `python tests/write_store_child.py ROOT MODEL N DIM DELAY`.

Prints `committed K` after every commit so the parent knows when to kill it.
"""

import sys
import time

from store_fixtures import features_for, rows_for, spec_for

from featurestore.store import StoreWriter

root, model, n, dim, delay = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
spec = spec_for(model=model, dim=dim)
with StoreWriter.open(spec, rows_for(n), root=root, commit_bytes=8 * dim * 4) as writer:
    print("start", writer.committed_rows, flush=True)
    for start in range(writer.committed_rows, n, 8):
        writer.write(features_for(start, min(start + 8, n), dim))
        print("committed", writer.committed_rows, flush=True)
        time.sleep(delay)
    writer.finalize()
print("done", flush=True)
