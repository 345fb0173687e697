"""The kernel table: which CUDA module holds the twin of each CPU kernel module, and what has none yet.

Pure data (importing it imports no kernels): the CUDA backend (simulator/backend/cuda.py) looks
kernels up here, and a test checks that every public function of every CPU kernel module has a twin
of the same name and parameters, apart from the differences listed with their reason.
"""

from __future__ import annotations

# CPU kernel module -> the CUDA module with its twins
MODULES = {
    "simulator.kernels.cpu.activations": "simulator.kernels.cuda.elementwise",
    "simulator.kernels.cpu.linear": "simulator.kernels.cuda.linear",
    "simulator.kernels.cpu.embedding": "simulator.kernels.cuda.embedding",
    "simulator.kernels.cpu.norms": "simulator.kernels.cuda.norms",
    "simulator.kernels.cpu.batchnorm": "simulator.kernels.cuda.batchnorm",
    "simulator.model.batchnorm_mode": "simulator.kernels.cuda.batchnorm",
    "simulator.kernels.cpu.softmax": "simulator.kernels.cuda.softmax",
    "simulator.kernels.cpu.rope": "simulator.kernels.cuda.rope",
    "simulator.kernels.cpu.attention": "simulator.kernels.cuda.attention",
    "simulator.kernels.cpu.attention_tiled": "simulator.kernels.cuda.attention",
    "simulator.optim.kernels": "simulator.kernels.cuda.optim",
    "simulator.optim.clip": "simulator.kernels.cuda.optim",
}

# twins in another module than the table says
ELSEWHERE = {"dropout_forward": "simulator.kernels.cuda.dropout",
             "dropout_classic_forward": "simulator.kernels.cuda.dropout",
             "dropout_backward": "simulator.kernels.cuda.dropout"}

# twins whose parameters differ from the CPU's, and why
DIFFERENT_PARAMETERS = {
    "dropout_forward": "draws its mask from Philox (seed, call) where the CPU takes the caller's uniforms",
    "dropout_classic_forward": "draws its mask from Philox (seed, call) where the CPU takes the caller's uniforms",
    "batchnorm_eval_backward": "takes two optional (C,) scratch buffers for its column sums",
    "sum_of_squares": "takes an optional scratch from reduction_scratch",
    "global_norm": "takes an optional scratch from reduction_scratch",
    "clip_gradients": "takes an optional scratch from reduction_scratch",
    "tiled_attention_backward": "by_rows / rows pick the CPU's backward by query-row blocks through BLAS or its tile "
                                "kernels; the GPU has the tile kernels only",
}

# host-side functions that build tables or check settings: the same numpy code serves both backends
HOST_SIDE = {"sinusoid_table", "rope_tables", "check_clip",
             "causal_blocks", "window_starts", "scratch",  # the CPU attention's row blocks and its kept temporaries
             # the CPU's two ways to the naive attention, which attention_heads_* choose between (the GPU has one)
             "per_head_pays", "blas_heads_forward", "blas_heads_backward"}

# CPU kernels without a twin yet (said in docs/ARCHITECTURE.md)
NOT_YET: dict[str, str] = {}
