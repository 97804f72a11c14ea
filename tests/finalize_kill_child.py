"""A writer killed inside ``finalize``: `python tests/finalize_kill_child.py ROOT N DIM`.

Writes and commits every row, then finalizes; the moment PyTables has removed the old
``/provenance`` group (pandas removes a key before writing it again) the process sends itself
SIGKILL, a real kill at the one instant of finalize that changes HDF5 metadata. The hook only
picks the instant; the kill is the kernel's.
"""

import os
import signal
import sys

import tables
from store_fixtures import features_for, rows_for, spec_for

from featurestore.store import StoreWriter

root, n, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
remove_node = tables.File.remove_node


def remove_then_die(self, *args, **kwargs):
    remove_node(self, *args, **kwargs)
    self.flush()
    os.kill(os.getpid(), signal.SIGKILL)


with StoreWriter.open(spec_for(dim=dim), rows_for(n), root=root) as writer:
    writer.write(features_for(0, n, dim))
    writer.commit()
    print("committed", writer.committed_rows, flush=True)
    tables.File.remove_node = remove_then_die
    writer.finalize()
print("finalized", flush=True)
