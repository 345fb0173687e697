"""Every public CPU kernel has a CUDA twin of the same name and parameters (or a listed reason why not)."""

from __future__ import annotations

import importlib
import inspect

import pytest

from simulator.kernels.cuda import table


def _public_functions(module):
    return {n: f for n, f in vars(module).items()
            if not n.startswith("_") and callable(f) and not inspect.isclass(f)
            and getattr(f, "__module__", None) == module.__name__}


def _params(f):
    return list(inspect.signature(f).parameters)


@pytest.mark.parametrize("cpu_name", sorted(table.MODULES))
def test_every_cpu_kernel_has_a_twin(cpu_name):
    cpu = importlib.import_module(cpu_name)
    functions = _public_functions(cpu)
    assert functions, f"{cpu_name}: no public functions found (the check would pass vacuously)"
    for name, f in functions.items():
        if name in table.HOST_SIDE or name in table.NOT_YET:
            continue
        gpu = importlib.import_module(table.ELSEWHERE.get(name, table.MODULES[cpu_name]))
        assert hasattr(gpu, name), f"{cpu_name}.{name} has no CUDA twin in {gpu.__name__}"
        if name not in table.DIFFERENT_PARAMETERS:
            assert _params(getattr(gpu, name)) == _params(f), f"{name}: parameters differ"


def test_listed_exceptions_exist():
    """The lists name real CPU functions, so a rename cannot leave a stale excuse behind."""
    names = set()
    for cpu_name in table.MODULES:
        names |= set(_public_functions(importlib.import_module(cpu_name)))
    for listed in (table.NOT_YET, table.DIFFERENT_PARAMETERS, table.HOST_SIDE, table.ELSEWHERE):
        assert set(listed) <= names, set(listed) - names
