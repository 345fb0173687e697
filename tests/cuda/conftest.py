"""The CUDA tests: on a GPU when one is usable, else in numba-cuda's simulator (see target.py).

Every test here is skipped, saying why, when neither works (numba-cuda missing or broken, or
NUMBA_ENABLE_CUDASIM=0 on a machine without a GPU). The simulator runs each CUDA thread as a
Python thread and polls them at every syncthreads; a shorter GIL switch interval while these
tests run makes that polling several times cheaper (restored afterwards, so the CPU tests in the
same process are untouched). SIMULATOR_SWITCH_INTERVAL=1e-6 (seconds) makes the threads interleave far
more often: a race between the threads of a block then shows in most runs, not one in hundreds.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from tests.cuda import target


def pytest_report_header(config):
    return f"cuda tests: {target.MODE or 'skipped'} ({target.WHY or target.SKIP_REASON})"


def pytest_collection_modifyitems(config, items):
    if target.MODE:
        return
    skip = pytest.mark.skip(reason=f"CUDA tests need a GPU or the CUDA simulator: {target.SKIP_REASON}")
    for item in items:
        node = item.nodeid.replace("\\", "/")
        if "tests/cuda/" in node and "test_cuda_isolation.py" not in node:  # that one needs no CUDA
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="module")
def _fast_simulator_switching():
    old = sys.getswitchinterval()
    if target.MODE == "simulator":
        sys.setswitchinterval(float(os.environ.get("SIMULATOR_SWITCH_INTERVAL", "5e-4")))
    yield
    sys.setswitchinterval(old)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
