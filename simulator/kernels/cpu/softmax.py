"""Row softmax (stable) and the fused softmax + cross-entropy over the vocabulary."""

import numpy as np
from numba import prange

from simulator.kernels.cpu.jit import wide


@wide
def softmax_forward(probs, logits):
    """probs = softmax(logits) per row, subtracting the row max so any scale is safe."""
    # probs, logits are (N, V)
    N, V = logits.shape
    for n in prange(N):
        mx = -np.inf
        for v in range(V):
            mx = max(mx, logits[n, v])
        s = 0.0
        for v in range(V):
            e = np.exp(logits[n, v] - mx)
            probs[n, v] = e
            s += e
        for v in range(V):
            probs[n, v] /= s


@wide
def softmax_backward(dlogits, dprobs, probs):
    """dlogits += probs * (dprobs - sum(dprobs * probs)) per row."""
    N, V = probs.shape
    for n in prange(N):
        dot = 0.0
        for v in range(V):
            dot += dprobs[n, v] * probs[n, v]
        for v in range(V):
            dlogits[n, v] += probs[n, v] * (dprobs[n, v] - dot)


@wide
def crossentropy_forward(losses, logits, targets):
    """losses[n] = logsumexp(logits[n]) - logits[n, targets[n]]."""
    # losses is (N,), logits is (N, V), targets is (N,) ints
    N, V = logits.shape
    for n in prange(N):
        mx = -np.inf
        for v in range(V):
            mx = max(mx, logits[n, v])
        s = 0.0
        for v in range(V):
            s += np.exp(logits[n, v] - mx)
        losses[n] = mx + np.log(s) - logits[n, targets[n]]


@wide
def crossentropy_softmax_backward(losses, dlogits, logits, targets, dloss):
    """Fused: writes losses and dlogits = dloss * (softmax(logits) - onehot(targets)) in one pass.

    The one backward kernel that writes: the gradient starts here, before the
    model zeroes the others, so there is nothing to add it onto.
    """
    # losses is (N,), dlogits, logits are (N, V); dloss is the scalar weight of each row (1/N for a mean)
    N, V = logits.shape
    for n in prange(N):
        mx = -np.inf
        for v in range(V):
            mx = max(mx, logits[n, v])
        s = 0.0
        for v in range(V):
            e = np.exp(logits[n, v] - mx)
            dlogits[n, v] = e
            s += e
        t = targets[n]
        losses[n] = mx + np.log(s) - logits[n, t]
        inv = dloss / s
        for v in range(V):
            dlogits[n, v] *= inv
        dlogits[n, t] -= dloss
