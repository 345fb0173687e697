"""One thread for numba and BLAS while a small lesson computes.

The lessons' models are small (widths of 32 to 128): waking a second thread for their products costs
more than it saves, by far on a busy machine. Measured on a busy 2-core machine, the long-context
lesson's 100 steps of three models: 174 s wall, 53 s CPU with the default threads, 15 s wall, 4.5 s CPU
on one (the same losses); the BERT lesson's step 1.36 s against 0.10 s under a load of 14.
"""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def one_thread():
    """numba (this thread; its setting is per thread) and BLAS on one thread until the block ends.

    BLAS's limit is process-wide, so a GPT training beside the lesson in the window runs its BLAS on one
    thread for those seconds too.
    """
    import numba
    from threadpoolctl import threadpool_limits

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(before)
