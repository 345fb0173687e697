"""CUDA kernels (numba-cuda): a twin of each CPU kernel of `kernels/cpu/` and `optim/kernels.py`.

Importing this package imports nothing; each module imports `numba.cuda` itself, so only code
that asks for the GPU (or its simulator, `NUMBA_ENABLE_CUDASIM=1`) ever loads it, and a machine
where numba-cuda is missing or broken still trains on the CPU.

Twins keep the CPU signature and contract: outputs first, never allocate (the few exceptions say
so), every backward adds (`+=`) into the gradients it is given. Arrays are numba device arrays
(numpy arrays work too, copied both ways at each call, for tests). Where a CPU kernel writes a
BLAS product into a gradient that holds none yet, the CUDA twin adds it (the tiled GEMM
accumulates), which is the same sum, so no scratch buffer is needed.

Modules: `launch` (block sizes, the per-dtype kernel cache, block reductions), `elementwise`
(activations, residual, bias add), `dropout` + `philox` (counter-based masks), `embedding`,
`gemm` + `linear`, `norms`, `batchnorm` (with the train / eval dispatch), `softmax`, `rope`,
`attention` (tiled with the online softmax, and the naive one), `optim` (every optimizer, the
global norm and clipping); `table` (which twin is where; pure data) and `ptx_check` (compiles every
kernel for a real GPU without one).
"""
