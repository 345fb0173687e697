"""Backends: where the engine's arrays live and which kernels run on them (`train.backend`).

A backend provides the arrays (`zeros`, `from_host`, `to_host`, `upload`, `copy`, `fill`, ...) and the
kernels by name (`backend.k.linear_forward`, ...). The GPT's op list (simulator/model/gpt.py), the
optimizers and clipping (simulator/optim/), the TrainingSession, its phases and its StepRecord are one
code path for both; only the backend object differs:

* `cpu.py`: numpy arrays and the numba CPU kernels (the default);
* `cuda.py`: numba device arrays and the CUDA twins (simulator/kernels/cuda/); imported only when asked
  for, so the CPU path never imports numba.cuda.

`train.backend: auto` takes the GPU when one is usable (probe.py asks the driver through ctypes), else
the CPU. The CUDA simulator counts as usable only with NUMBA_ENABLE_CUDASIM=1 set explicitly.
"""

from __future__ import annotations

from simulator.backend.probe import cuda_usable
from simulator.i18n import N_, _
from simulator.rules import Problem


class BackendError(Exception):
    """A backend that cannot run here, or a setting it cannot run (one sentence)."""


# features without CUDA twins yet: (what, test on a RunConfig), refused at config time with backend cuda
NOT_ON_CUDA = (
    ("model.lora.base", N_("QLoRA's NF4 base (its tile-by-tile dequantizing linear, simulator/kernels/cpu/qlora.py, "
     "has no CUDA twin yet)"), lambda cfg: cfg.model.lora.quantized),
    ("model.lora", N_("LoRA adapters (their kernels, simulator/kernels/cpu/lora.py, have no CUDA twin yet)"),
     lambda cfg: cfg.model.lora.on),
    ("model.init_from", N_("starting from a base checkpoint (model.init_from) is not wired to device arrays yet"),
     lambda cfg: cfg.model.init_from is not None),
)

_BUILT: dict[str, object] = {}


def backend_problem(cfg) -> Problem | None:
    """A setting backend cuda cannot run yet (the first one), or None. Checked whether a GPU is here or not."""
    if cfg.train.backend != "cuda":
        return None
    for path, what, test in NOT_ON_CUDA:
        if test(cfg):
            return Problem("train.backend", _("cuda cannot run {what}").format(what=_(what)),
                           _("use train.backend: cpu"), at=("train.backend", path))
    return None


def backend_setting(cfg) -> str:
    """`train.backend` as it should be built: auto with a feature cuda cannot run yet (NOT_ON_CUDA) is cpu."""
    if cfg.train.backend == "auto" and any(test(cfg) for _, _, test in NOT_ON_CUDA):
        return "cpu"
    return cfg.train.backend


def resolve(name: str) -> tuple[str, tuple[str, dict]]:
    """(backend that runs, what it is as a message id and fields) for a `train.backend` value; BackendError
    when cuda cannot run here."""
    if name == "cpu":
        return "cpu", (N_("CPU (numba)"), {})
    if name not in ("cuda", "auto"):
        raise BackendError(_("train.backend: {name!r} is not one of cpu, cuda, auto").format(name=name))
    ok, what = cuda_usable()
    if ok:
        return "cuda", (what, {})
    if name == "auto":
        return "cpu", (N_("CPU (numba; no usable GPU: {what})"), {"what": what})
    raise BackendError(_("train.backend is cuda, but no CUDA GPU is usable here ({what}); use train.backend: cpu or "
                         "auto (train --backend cpu), or set NUMBA_ENABLE_CUDASIM=1 to run the kernels in "
                         "numba-cuda's (slow) simulator").format(what=_(what)))


def get_backend(name: str = "cpu"):
    """The backend object for a `train.backend` value (built once per process)."""
    which, (msgid, fields) = resolve(name)
    key = f"{which}:{msgid}:{fields}"
    if key not in _BUILT:
        from simulator.backend.cpu import CpuBackend
        if which == "cpu":
            backend = CpuBackend()
        else:
            try:
                from simulator.backend.cuda import CudaBackend
                backend = CudaBackend(msgid)
            except Exception as exc:  # numba-cuda missing or broken: the sentence, not a traceback
                why = f"numba-cuda does not load ({type(exc).__name__}: {exc})"
                if name != "auto":
                    raise BackendError(_("train.backend is {name}, but {why}; use train.backend: cpu").format(
                                           name=name, why=why)) from None
                backend, msgid, fields = CpuBackend(), N_("CPU (numba; the GPU is not usable: {why})"), {"why": why}
        backend.describe(msgid, **fields)
        _BUILT[key] = backend
    return _BUILT[key]


def cpu_backend():
    """The CPU backend (the default of every model and optimizer built without one)."""
    return get_backend("cpu")
