"""Row softmax and the fused softmax + cross-entropy on the GPU (twins of kernels/cpu/softmax.py).

One block per row of V logits; its ROW_THREADS threads stride over the row, and the row max
and the sum of exponentials meet in shared memory (a tree), so any V works with any block size.
"""

from __future__ import annotations

import math

from numba import cuda

from simulator.kernels.cuda.launch import ROW_THREADS, block_max, block_sum, per_dtype


@per_dtype
def _kernels(t):
    R = ROW_THREADS
    zero, ninf = t(0), t(-math.inf)

    @cuda.jit(device=True)
    def row_max_sum(buf, logits, n, tid):
        """(max, sum of exp(x - max)) of row n; every thread gets both."""
        V = logits.shape[1]
        mx = ninf
        for v in range(tid, V, R):
            x = logits[n, v]
            if x > mx:
                mx = x
        buf[tid] = mx
        block_max(buf, tid, R)
        mx = buf[0]
        cuda.syncthreads()
        acc = zero
        for v in range(tid, V, R):
            acc += math.exp(logits[n, v] - mx)
        buf[tid] = acc
        block_sum(buf, tid, R)
        s = buf[0]
        cuda.syncthreads()
        return mx, s

    @cuda.jit
    def ce_backward(losses, dlogits, logits, targets, dloss):
        buf = cuda.shared.array(R, t)
        n, tid = cuda.blockIdx.x, cuda.threadIdx.x
        mx, s = row_max_sum(buf, logits, n, tid)
        tgt = targets[n]
        inv = dloss / s
        for v in range(tid, logits.shape[1], R):
            g = math.exp(logits[n, v] - mx) * inv
            if v == tgt:
                g -= dloss
            dlogits[n, v] = g
        if tid == 0:
            losses[n] = mx + math.log(s) - logits[n, tgt]

    @cuda.jit
    def ce_forward(losses, logits, targets):
        buf = cuda.shared.array(R, t)
        n, tid = cuda.blockIdx.x, cuda.threadIdx.x
        mx, s = row_max_sum(buf, logits, n, tid)
        if tid == 0:
            losses[n] = mx + math.log(s) - logits[n, targets[n]]

    @cuda.jit
    def sm_forward(probs, logits):
        buf = cuda.shared.array(R, t)
        n, tid = cuda.blockIdx.x, cuda.threadIdx.x
        mx, s = row_max_sum(buf, logits, n, tid)
        for v in range(tid, logits.shape[1], R):
            probs[n, v] = math.exp(logits[n, v] - mx) / s

    @cuda.jit
    def sm_backward(dlogits, dprobs, probs):
        buf = cuda.shared.array(R, t)
        n, tid = cuda.blockIdx.x, cuda.threadIdx.x
        V = probs.shape[1]
        acc = zero
        for v in range(tid, V, R):
            acc += dprobs[n, v] * probs[n, v]
        buf[tid] = acc
        block_sum(buf, tid, R)
        dot = buf[0]
        for v in range(tid, V, R):
            dlogits[n, v] += probs[n, v] * (dprobs[n, v] - dot)

    return {"ce_backward": ce_backward, "ce_forward": ce_forward, "sm_forward": sm_forward,
            "sm_backward": sm_backward}


def crossentropy_softmax_backward(losses, dlogits, logits, targets, dloss):
    """Fused: writes losses and dlogits = dloss * (softmax(logits) - onehot(targets)); the one writing backward."""
    k = _kernels(logits.dtype)["ce_backward"]
    k[logits.shape[0], ROW_THREADS](losses, dlogits, logits, targets, logits.dtype.type(dloss))


def crossentropy_forward(losses, logits, targets):
    """losses[n] = logsumexp(logits[n]) - logits[n, targets[n]]."""
    _kernels(logits.dtype)["ce_forward"][logits.shape[0], ROW_THREADS](losses, logits, targets)


def softmax_forward(probs, logits):
    """probs = softmax(logits) per row (stable)."""
    _kernels(logits.dtype)["sm_forward"][logits.shape[0], ROW_THREADS](probs, logits)


def softmax_backward(dlogits, dprobs, probs):
    """dlogits += probs * (dprobs - sum(dprobs * probs)) per row."""
    _kernels(probs.dtype)["sm_backward"][probs.shape[0], ROW_THREADS](dlogits, dprobs, probs)
