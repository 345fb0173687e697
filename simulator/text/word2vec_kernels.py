"""word2vec's kernels: the negative-sampling loss of one vector against its targets, and the skip-gram and CBOW
passes built on it, each run either as an exact gradient or as word2vec's in-place SGD.

Shapes: V vocabulary, D vector size, N positions (word ids after subsampling), K negatives, P skip-gram pairs.
`w_in` (V, D) are the input vectors (the word vectors the lesson shows), `w_out` (V, D) the output vectors.

One code path for both uses, so the gradient the finite-difference test checks is the one training applies:

* gradient: `gin, gout` are zeroed gradient buffers and `scale` is 1 per position; the pass adds
  dL/dw_in and dL/dw_out (L: the summed loss of the pass).
* SGD: `gin, gout` are `w_in, w_out` themselves and `scale` is -lr per position. Each pair (skip-gram) or
  position (CBOW) then takes one step on its own loss, as word2vec.c does: an output row's step is
  computed before it changes, the input's step is added after all its targets.
"""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _neg_log_sigmoid(s):
    """-log sigmoid(s) = log(1 + exp(-s)), without overflow for large |s|."""
    if s > 0.0:
        return np.log1p(np.exp(-s))
    return -s + np.log1p(np.exp(s))


@njit(cache=True, nogil=True)
def _sigmoid(s):
    if s >= 0.0:
        return 1.0 / (1.0 + np.exp(-s))
    e = np.exp(s)
    return e / (1.0 + e)


@njit(cache=True, nogil=True)
def ns_loss_backward(dh, gout, w_out, h, positive, negatives, scale):
    """Negative-sampling loss of vector h; adds scale * dL/dh into dh and scale * dL/du_t into gout[t]; returns L."""
    # dh, h are (D,); gout, w_out are (V, D); negatives is (K,)
    # L = -log sigmoid(u_pos . h) - sum_k log sigmoid(-u_neg_k . h), a negative equal to the positive skipped
    # (word2vec.c skips it too: it would push the word away from itself)
    # dL/ds = sigmoid(s) - label, s = u_t . h;  dL/dh = sum_t dL/ds_t u_t;  dL/du_t = dL/ds_t h
    D = h.shape[0]
    K = negatives.shape[0]
    loss = 0.0
    for k in range(K + 1):
        if k == 0:
            t, label = positive, 1.0
        else:
            t, label = negatives[k - 1], 0.0
            if t == positive:
                continue
        s = 0.0
        for d in range(D):
            s += w_out[t, d] * h[d]
        loss += _neg_log_sigmoid(s) if label == 1.0 else _neg_log_sigmoid(-s)
        g = (_sigmoid(s) - label) * scale
        for d in range(D):
            dh[d] += g * w_out[t, d]  # read before gout[t, d] moves, when gout is w_out
            gout[t, d] += g * h[d]
    return loss


@njit(cache=True, nogil=True)
def skipgram_pass(gin, gout, dh, w_in, w_out, ids, radius, negatives, scale):
    """Skip-gram: each position i predicts every word within radius[i] of it; returns the summed loss."""
    # gin, gout, w_in, w_out are (V, D); dh is (D,) scratch; ids, radius, scale are (N,); negatives is (P, K),
    # one row per (center, context) pair in the order visited: center by center, context left to right
    N = ids.shape[0]
    D = w_in.shape[1]
    loss = 0.0
    p = 0
    for i in range(N):
        c = ids[i]
        for j in range(max(0, i - radius[i]), min(N, i + radius[i] + 1)):
            if j == i:
                continue
            dh[:] = 0.0
            loss += ns_loss_backward(dh, gout, w_out, w_in[c], ids[j], negatives[p], scale[i])
            for d in range(D):
                gin[c, d] += dh[d]
            p += 1
    return loss


@njit(cache=True, nogil=True)
def cbow_pass(gin, gout, h, dh, w_in, w_out, ids, radius, negatives, scale):
    """CBOW: the mean of the input vectors within radius[i] of position i predicts the word at i; returns the loss."""
    # gin, gout, w_in, w_out are (V, D); h, dh are (D,) scratch; ids, radius, scale are (N,); negatives is (N, K)
    # h = (1/m) sum_j w_in[ids[j]], so dL/dw_in[ids[j]] = dL/dh / m for each of the m context words (the exact
    # gradient: word2vec.c adds the undivided dL/dh, m times that)
    N = ids.shape[0]
    D = w_in.shape[1]
    loss = 0.0
    for i in range(N):
        lo, hi = max(0, i - radius[i]), min(N, i + radius[i] + 1)
        m = hi - lo - 1
        if m == 0:
            continue
        h[:] = 0.0
        for j in range(lo, hi):
            if j != i:
                for d in range(D):
                    h[d] += w_in[ids[j], d]
        for d in range(D):
            h[d] /= m
        dh[:] = 0.0
        loss += ns_loss_backward(dh, gout, w_out, h, ids[i], negatives[i], scale[i])
        for j in range(lo, hi):
            if j != i:
                for d in range(D):
                    gin[ids[j], d] += dh[d] / m
    return loss
