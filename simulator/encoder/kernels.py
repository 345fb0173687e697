"""The segment (token type) embedding: the third table BERT sums into its input, beside tokens and positions.

Shape alphabet: B batch, T time, C channels, S segments (2: sentence A and sentence B).
"""

from numba import njit, prange

from simulator.kernels.cpu.jit import wide


@wide
def segment_embedding_forward(out, segments, wse):
    """Adds out[b, t] += wse[segments[b, t]] (onto the token + position sum the GPT's kernel wrote)."""
    # out is (B, T, C), segments is (B, T) ints in [0, S), wse is (S, C)
    B, T, C = out.shape
    for bt in prange(B * T):
        b, t = bt // T, bt % T
        s = segments[b, t]
        for c in range(C):
            out[b, t, c] += wse[s, c]


@njit(cache=True, nogil=True)
def segment_embedding_backward(dwse, dout, segments):
    """Accumulates dwse[segments[b, t]] += dout[b, t] (a scatter-add)."""
    # dwse is (S, C), dout is (B, T, C), segments is (B, T); serial: every row of a segment hits one row of dwse
    B, T, C = dout.shape
    for b in range(B):
        for t in range(T):
            s = segments[b, t]
            for c in range(C):
                dwse[s, c] += dout[b, t, c]
