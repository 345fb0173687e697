"""Token + position embedding."""

from numba import njit, prange

from simulator.kernels.cpu.jit import wide


@wide
def embedding_forward(out, ids, wte, wpe):
    """out[b, t] = wte[ids[b, t]] + wpe[t]."""
    # out is (B, T, C), ids is (B, T) ints, wte is (V, C), wpe is (maxT, C)
    B, T, C = out.shape
    for bt in prange(B * T):
        b, t = bt // T, bt % T
        tok = ids[b, t]
        for c in range(C):
            out[b, t, c] = wte[tok, c] + wpe[t, c]


@njit(cache=True, nogil=True)
def embedding_backward(dwte, dwpe, dout, ids):
    """Accumulates dout into the rows of the tables that were read (a scatter-add)."""
    # dwte is (V, C), dwpe is (maxT, C), dout is (B, T, C); serial: rows of dwte collide
    B, T, C = dout.shape
    for b in range(B):
        for t in range(T):
            tok = ids[b, t]
            for c in range(C):
                dwte[tok, c] += dout[b, t, c]
                dwpe[t, c] += dout[b, t, c]
