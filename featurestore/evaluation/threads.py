"""Native thread pools (BLAS, OpenMP) of the evaluating process."""

from __future__ import annotations

from threadpoolctl import threadpool_limits


def limit_native_threads(threads: int) -> None:
    """Cap BLAS and OpenMP threads of this whole process at ``threads``, for good.

    Tasks running side by side must not each start one BLAS thread per core: on a busy
    2-core machine the oversubscribed pools spin and a fit runs tens of times slower. The cap
    is process-wide and deliberately not restored, because restoring it when one task ends
    would lift it under tasks still running in other threads.
    """
    threadpool_limits(limits=max(1, int(threads)))
