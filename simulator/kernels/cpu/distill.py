"""Knowledge distillation's three loss terms, each a forward (a loss per row) and an accumulate-only backward.

The distillation loss of a student (Hinton et al. 2015; DistilBERT, Sanh et al. 2019) is

    alpha * CE(student, hard targets) + beta * T^2 * KL(teacher_T || student_T) + gamma * (1 - cos(h_s, h_t))

over the rows (tokens) of a batch. The first two terms reach the student through its logits, the third
through its final hidden state. Every backward kernel adds (+=) `scale` times its term's gradient into
the gradient it is given, so the three terms are summed into one `dlogits` and one `dh` and the
student's backward runs once; the caller zeroes those buffers first. `scale` carries the term's weight
and the 1/N of the mean (and T^2 for the KL term).

Rows are independent and the shapes small (N = B*T rows of V or C numbers), so the loops are serial; numpy's
error model, as the other kernels (a diverging run gives NaN, not ZeroDivisionError).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from simulator.kernels.cpu.softmax import crossentropy_forward

# the hard-label term's forward is the model's own cross-entropy kernel: losses[n] = -log softmax(logits[n])[t[n]]
hard_ce_forward = crossentropy_forward


@njit(cache=True, nogil=True, error_model="numpy")
def hard_ce_backward(dlogits, logits, targets, scale):
    """Accumulates dlogits += scale * (softmax(logits) - onehot(targets))."""
    # dlogits, logits (N, V), targets (N,) ints; scale: the term's weight / N
    N, V = logits.shape
    for n in range(N):
        mx = -np.inf
        for v in range(V):
            mx = max(mx, logits[n, v])
        s = 0.0
        for v in range(V):
            s += np.exp(logits[n, v] - mx)
        inv = scale / s
        for v in range(V):
            dlogits[n, v] += np.exp(logits[n, v] - mx) * inv
        dlogits[n, targets[n]] -= scale


@njit(cache=True, nogil=True, error_model="numpy")
def _log_normalizer(row, inv_t):
    """(max of row / T, log sum exp(row / T - max)): log softmax(row / T)[v] = row[v] / T - max - lse."""
    mx = -np.inf
    for v in range(row.shape[0]):
        mx = max(mx, row[v] * inv_t)
    s = 0.0
    for v in range(row.shape[0]):
        s += np.exp(row[v] * inv_t - mx)
    return mx, np.log(s)


@njit(cache=True, nogil=True, error_model="numpy")
def soft_kl_forward(losses, student, teacher, inv_t):
    """losses[n] = KL(p || q) = sum_v p_v (log p_v - log q_v), p = softmax(teacher / T), q = softmax(student / T).

    Computed from log-softmaxes, so a probability that underflows to 0 adds 0, not NaN.
    """
    # losses (N,), student, teacher (N, V) logits; inv_t = 1 / T
    N, V = student.shape
    for n in range(N):
        ms, ls = _log_normalizer(student[n], inv_t)
        mt, lt = _log_normalizer(teacher[n], inv_t)
        kl = 0.0
        for v in range(V):
            log_p = teacher[n, v] * inv_t - mt - lt
            log_q = student[n, v] * inv_t - ms - ls
            kl += np.exp(log_p) * (log_p - log_q)
        losses[n] = kl


@njit(cache=True, nogil=True, error_model="numpy")
def soft_kl_backward(dstudent, student, teacher, inv_t, scale):
    """Accumulates dstudent += scale * (q - p) / T, the gradient of KL(p || q) with respect to the student's logits."""
    # dstudent, student, teacher (N, V); scale: the term's weight * T^2 / N
    N, V = student.shape
    for n in range(N):
        ms, ls = _log_normalizer(student[n], inv_t)
        mt, lt = _log_normalizer(teacher[n], inv_t)
        k = scale * inv_t
        for v in range(V):
            q = np.exp(student[n, v] * inv_t - ms - ls)
            p = np.exp(teacher[n, v] * inv_t - mt - lt)
            dstudent[n, v] += k * (q - p)


@njit(cache=True, nogil=True, error_model="numpy")
def _norms(hs, ht, n, eps):
    """(h_s . h_t, |h_s|, |h_t|) of row n, the norms as sqrt(h . h + eps^2): smooth at 0, exact elsewhere."""
    dot, ss, tt = 0.0, 0.0, 0.0
    for c in range(hs.shape[1]):
        dot += hs[n, c] * ht[n, c]
        ss += hs[n, c] * hs[n, c]
        tt += ht[n, c] * ht[n, c]
    return dot, np.sqrt(ss + eps * eps), np.sqrt(tt + eps * eps)


@njit(cache=True, nogil=True, error_model="numpy")
def cosine_forward(losses, hs, ht, eps):
    """losses[n] = 1 - cos(hs[n], ht[n])."""
    # losses (N,), hs, ht (N, C): the student's hidden state (or its projection) and the teacher's
    for n in range(hs.shape[0]):
        dot, a, b = _norms(hs, ht, n, eps)
        losses[n] = 1.0 - dot / (a * b)


@njit(cache=True, nogil=True, error_model="numpy")
def cosine_backward(dhs, hs, ht, eps, scale):
    """Accumulates dhs += scale * d(1 - cos(hs, ht))/dhs = -scale * (ht / (|hs| |ht|) - cos * hs / |hs|^2)."""
    # dhs, hs, ht (N, C); scale: the term's weight / N. The teacher is frozen: no gradient for ht
    for n in range(hs.shape[0]):
        dot, a, b = _norms(hs, ht, n, eps)
        cos = dot / (a * b)
        for c in range(hs.shape[1]):
            dhs[n, c] -= scale * (ht[n, c] / (a * b) - cos * hs[n, c] / (a * a))
