"""Compile every CUDA kernel for a real GPU without one: `python -m simulator.kernels.cuda.ptx_check [CC]`.

The simulator runs the kernels as Python, so it cannot tell whether numba-cuda's GPU compiler accepts
them (types, shared and local arrays, device-function calls). With the CUDA toolkit's NVVM on the
machine (no GPU or driver needed), this module intercepts every kernel launch that the twins' wrapper
functions make on small host arrays, compiles the kernel to PTX for compute capability CC (default
9.0) with the launch's argument types instead of running it, and reports each kernel and signature
compiled, or the first failure; with the toolkit's ptxas at hand each PTX is also assembled (which
checks what PTX does not: static shared memory per block, registers). Device allocations are
replaced by host arrays for the purpose: `main` patches numba-cuda for its own process, so run it
as a program (a child process), never import it where kernels are launched. Without
NUMBA_ENABLE_CUDASIM; it exits 2 with one sentence when that is set or the toolchain (NVVM,
libdevice, NVRTC) is incomplete, 1 when a kernel does not compile or assemble.
"""

from __future__ import annotations

import os
import sys

import numpy as np

# what numba-cuda raises when a part of the toolkit cannot be found (no kernel was at fault)
TOOLCHAIN_MISSING = {"DynamicLibNotFoundError", "NvvmSupportError", "CudaSupportError", "NvrtcSupportError",
                     "LibDeviceNotFoundError", "FileNotFoundError"}


class _Host(np.ndarray):
    """A host array standing in for a device array (copy_to_host returns itself)."""

    def copy_to_host(self):
        return np.asarray(self)


def _ptxas():
    """The PTX assembler of the CUDA toolkit, or None."""
    import shutil

    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and os.path.exists(os.path.join(home, "bin", "ptxas")):
            return os.path.join(home, "bin", "ptxas")
    found = shutil.which("ptxas")
    if found:
        return found
    import glob

    candidates = sorted(glob.glob("/usr/local/cuda-*/bin/ptxas"))
    return candidates[-1] if candidates else None


def _assemble(ptx: str, cc, name: str) -> str:
    """ptxas's resource line for the kernel ("" without ptxas); raises when ptxas refuses it (too much shared
    memory, too many registers for the launch bounds ...)."""
    import re
    import subprocess
    import tempfile

    ptxas = _ptxas()
    if ptxas is None:
        return ""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        proc = subprocess.run([ptxas, f"-arch=sm_{cc[0]}{cc[1]}", "-v", src, "-o", os.path.join(tmp, "k.cubin")],
                              capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"ptxas refused {name}: {proc.stderr.strip()[:500]}")
    used = re.findall(r"Used \d+ registers.*", proc.stderr)
    return used[-1] if used else ""


def _host(a):
    return np.ascontiguousarray(a).view(_Host)


def _install(cc, compiled):
    from types import SimpleNamespace

    from numba import cuda
    from numba.cuda import dispatcher

    class Launch:
        def __init__(self, kernel):
            self.kernel = kernel

        def __call__(self, *args):
            types = tuple(self.kernel.typeof_pyval(np.asarray(a) if isinstance(a, _Host) else a) for a in args)
            key = (self.kernel.py_func.__qualname__, types)
            if key not in compiled:
                ptx, _ = cuda.compile_ptx(self.kernel.py_func, types, cc=cc)
                compiled[key] = _assemble(ptx, cc, key[0])

    dispatcher.CUDADispatcher.__getitem__ = lambda self, config: Launch(self)
    # device functions are compiled for "the current device": there is none, so it is the one asked for
    dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=cc)
    cuda.to_device = lambda a, *args, **kw: _host(np.array(a))
    cuda.device_array = lambda shape, dtype=np.float64, *args, **kw: _host(np.zeros(shape, dtype))
    cuda.is_cuda_array = lambda a: isinstance(a, _Host)


def _exercise(dtype):
    """Calls every twin once on tiny host arrays (the kernels compile instead of running)."""
    from types import SimpleNamespace

    from simulator.kernels.cuda import (
        attention,
        batchnorm,
        dropout,
        elementwise,
        embedding,
        gemm,
        linear,
        norms,
        optim,
        rope,
        softmax,
    )

    r = np.random.default_rng(0)

    def a(*shape):
        return _host(r.standard_normal(shape).astype(dtype))

    N, C, V, B, T, NH, NKV, HS = 4, 6, 7, 2, 3, 4, 2, 4
    for fwd, bwd in elementwise.ACTIVATION_KERNELS.values():
        fwd(a(N, C), a(N, C))
        bwd(a(N, C), a(N, C), a(N, C))
    elementwise.residual_forward(a(N, C), a(N, C), a(N, C))
    elementwise.add_inplace(a(N, C), a(N, C))
    dropout.dropout_forward(a(N, C), a(N, C), a(N, C), 1, 2, 0.1)
    dropout.dropout_classic_forward(a(N, C), a(N, C), a(N, C), 1, 2, 0.1)
    dropout.dropout_backward(a(N, C), a(N, C), a(N, C))
    dropout.dropout_uniform(_host(np.zeros(9)), 1, 2)
    ids = _host(np.zeros((B, T), np.int32))
    embedding.embedding_forward(a(B, T, C), ids, a(V, C), a(T, C))
    embedding.embedding_backward(a(V, C), a(T, C), a(B, T, C), ids)
    gemm.gemm(a(N, V), a(N, C), a(C, V))
    gemm.gemm_batched(a(2, N, V), a(2, C, N), a(2, V, C), True, True, True)
    linear.linear_forward(a(N, V), a(N, C), a(C, V), a(V))
    linear.linear_backward(a(N, C), a(C, V), a(V), a(N, V), a(N, C), a(C, V), a(N, C))
    norms.layernorm_forward(a(N, C), a(N), a(N), a(N, C), a(C), a(C))
    norms.layernorm_backward(a(N, C), a(C), a(C), a(N, C), a(N, C), a(C), a(N), a(N))
    norms.rmsnorm_forward(a(N, C), a(N), a(N, C), a(C))
    norms.rmsnorm_backward(a(N, C), a(C), a(N, C), a(N, C), a(C), a(N))
    mask = _host(np.ones(N, dtype))
    batchnorm.batchnorm_forward(a(N, C), a(C), a(C), a(C), a(N, C), mask, a(C), a(C))
    batchnorm.batchnorm_backward(a(N, C), a(C), a(C), a(N, C), a(N, C), mask, a(C), a(C), a(C), a(C), a(C))
    batchnorm.batchnorm_running_update(a(C), a(C), a(C), a(C), mask, 0.1)
    batchnorm.batchnorm_eval_forward(a(N, C), a(C), a(C), a(N, C), a(C), a(C), a(C), a(C))
    batchnorm.batchnorm_eval_backward(a(N, C), a(C), a(C), a(N, C), a(N, C), a(C), a(C), a(C))
    tg = _host(np.zeros(N, np.int32))
    softmax.crossentropy_softmax_backward(a(N), a(N, V), a(N, V), tg, 0.25)
    softmax.crossentropy_forward(a(N), a(N, V), tg)
    softmax.softmax_forward(a(N, V), a(N, V))
    softmax.softmax_backward(a(N, V), a(N, V), a(N, V))
    rope.rope_forward(a(B, NH, T, HS), a(T, HS // 2), a(T, HS // 2))
    rope.rope_backward(a(B, NH, T, HS), a(T, HS // 2), a(T, HS // 2))
    kvl = _host(np.full(B, T, np.int32))
    q, k, v = a(B, NH, T, HS), a(B, NKV, T, HS), a(B, NKV, T, HS)
    attention.tiled_attention_forward(a(B, NH, T, HS), a(B, NH, T), q, k, v, kvl, 0.5, True, 64, 64)
    attention.tiled_attention_backward(a(B, NH, T, HS), a(B, NKV, T, HS), a(B, NKV, T, HS), a(B, NH, T, HS), q, k,
                                       v, a(B, NH, T, HS), a(B, NH, T), kvl, 0.5, True, 64, 64)
    qkv = a(B, T, NH * HS + 2 * NKV * HS)
    attention.attention_forward(a(B, T, NH * HS), q, k, v, a(B, NH, T, T), a(B, NH, T, HS), qkv, 0.5, True, kvl)
    attention.attention_backward(a(*qkv.shape), a(B, NH, T, HS), a(B, NKV, T, HS), a(B, NKV, T, HS),
                                 a(B, NH, T, T), a(B, NH, T, HS), a(B, T, NH * HS), q, k, v, a(B, NH, T, T), 0.5)
    attention.split_heads_grad(a(B, NH, T, HS), a(B, T, NH * HS))
    m = _host(np.ones(N * C, np.uint8))
    flat = [a(N * C) for _ in range(4)]
    optim.sgd_update(flat[0], flat[1], flat[2], m, 0.1, 0.9, 0.0, 0.01, True, False)
    optim.adagrad_update(flat[0], flat[1], flat[2], m, 0.1, 1e-8, 0.0)
    optim.rmsprop_update(flat[0], flat[1], flat[3], flat[2], m, 0.1, 0.9, 1e-8, 0.0, 0.5)
    optim.adam_update(flat[0], flat[1], flat[3], flat[2], m, 0.1, 0.9, 0.999, 1e-8, 0.1, True, 0.1, 0.001)
    optim.ftrl_update(flat[0], flat[1], flat[3], flat[2], m, 0.1, 1.0, 0.1, 0.01)
    optim.clip_gradients(flat[2], SimpleNamespace(grad_clip=1e-6, clip_mode="norm"))
    optim.clamp_inplace(flat[2], 0.1)
    from simulator.kernels.cuda import stats

    segs = [(0, 2, 3, 3, stats.SPREAD_ROW), (6, 3, 2, 4, stats.SPREAD_COLUMN)]
    stats.param_statistics(stats.Segments(segs, stats.PARAM_WIDTHS), flat[0], flat[1], flat[2])
    stats.moment_statistics(stats.Segments(segs, stats.MOMENT_WIDTHS), flat[0])
    stats.saturated_counts(stats.Segments(segs, stats.COUNT_WIDTHS), flat[0], "tanh", 0.01)
    stats.live_columns(a(N, C))
    rows = stats.Segments([(0, 1, N, N, stats.SPREAD_NONE)] * 2, stats.IDENTITY_WIDTHS, chunk=1)
    stats.identity_rows(rows, 1, a(N, C), a(C), a(N), True, 1e-5)
    stats.identity_sums(rows)
    stats.attention_rows((B, NH, T), 1, kvl, att=a(B, NH, T, T))
    stats.attention_rows((B, NH, T), 1, kvl, q=q, k=k, lse=a(B, NH, T), scale=0.5)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cc = tuple(int(x) for x in (argv[0] if argv else "9.0").split("."))
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        print("ptx_check: NUMBA_ENABLE_CUDASIM is set; the GPU compiler only runs without the simulator",
              file=sys.stderr)
        return 2
    compiled: dict = {}
    try:
        _install(cc, compiled)
        for dtype in (np.float32, np.float64):
            _exercise(dtype)
    except Exception as exc:  # the first kernel that does not compile, or a toolchain part missing
        msg = str(exc).strip().splitlines()
        missing = type(exc).__name__ in TOOLCHAIN_MISSING
        what = "the CUDA toolchain is incomplete (NVVM, libdevice and NVRTC are needed)" if missing else "failed"
        first = msg[0].split(", No such file")[0][:200] if msg else ""  # pathfinder repeats itself
        print(f"ptx_check: {what}: {type(exc).__name__}: {first}", file=sys.stderr)
        if not missing:
            print("\n".join(msg[1:40]), file=sys.stderr)
        return 2 if missing else 1
    for (name, types), used in compiled.items():
        print(f"compiled {name}{tuple(str(t) for t in types)} {used}")
    assembled = "and assembled by ptxas " if any(compiled.values()) else ""
    print(f"ptx_check: {len(compiled)} kernel signatures compiled to PTX {assembled}"
          f"for compute capability {cc[0]}.{cc[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
