"""Every optimizer as one CUDA kernel over the flat buffers, the global gradient norm and clipping.

Twins of simulator/optim/kernels.py and clip.py, argument for argument: one thread per
coordinate, each coordinate's arithmetic in float64 and stored back in the array's dtype, as
on the CPU (so float32 weights move by the same rounded step). The scalar settings arrive as
Python floats, i.e. float64 kernel arguments.

The global norm is a two-stage reduction: up to MAX_BLOCKS blocks each sum the squares of a
grid-stride share of the buffer in shared memory (float64) into one partial, then one block sums
the partials. Only that one number crosses to the host (the step record and the divergence check
need it); the scaling runs on the device.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from simulator.kernels.cuda.launch import MAX_BLOCKS, ROW_THREADS, THREADS, block_sum, blocks

R = ROW_THREADS


@cuda.jit
def _sgd(params, buf, grads, decay_mask, lr, momentum, dampening, weight_decay, nesterov, first):
    i = cuda.grid(1)
    if i < params.shape[0]:
        w = np.float64(params[i])
        g = np.float64(grads[i]) + weight_decay * decay_mask[i] * w
        if momentum != 0.0:
            b = g if first else momentum * buf[i] + (1.0 - dampening) * g  # torch: the first buffer is g itself
            buf[i] = b
            g = g + momentum * b if nesterov else b
        params[i] = w - lr * g


@cuda.jit
def _adagrad(params, sum_sq, grads, decay_mask, lr, eps, weight_decay):
    i = cuda.grid(1)
    if i < params.shape[0]:
        w = np.float64(params[i])
        g = np.float64(grads[i]) + weight_decay * decay_mask[i] * w
        s = sum_sq[i] + g * g
        sum_sq[i] = s
        params[i] = w - lr * g / (math.sqrt(s) + eps)


@cuda.jit
def _rmsprop(params, square_avg, buf, grads, decay_mask, lr, rho, eps, weight_decay, momentum):
    i = cuda.grid(1)
    if i < params.shape[0]:
        w = np.float64(params[i])
        g = np.float64(grads[i]) + weight_decay * decay_mask[i] * w
        s = rho * square_avg[i] + (1.0 - rho) * g * g
        square_avg[i] = s
        step = g / (math.sqrt(s) + eps)
        if momentum != 0.0:
            step = momentum * buf[i] + step  # torch's RMSprop buffer starts at zero
            buf[i] = step
        params[i] = w - lr * step


@cuda.jit
def _adam(params, m, v, grads, decay_mask, lr, beta1, beta2, eps, weight_decay, decoupled, bc1, bc2):
    i = cuda.grid(1)
    if i < params.shape[0]:
        w = np.float64(params[i])
        wd = weight_decay * decay_mask[i]
        g = np.float64(grads[i])
        if not decoupled:
            g = g + wd * w  # coupled L2: normalised by sqrt(v) like any gradient
        mi = beta1 * m[i] + (1.0 - beta1) * g
        vi = beta2 * v[i] + (1.0 - beta2) * g * g
        m[i] = mi
        v[i] = vi
        if decoupled:
            w = w - lr * wd * w  # AdamW: every decayed weight shrinks by the same factor
        params[i] = w - lr * (mi / bc1) / (math.sqrt(vi / bc2) + eps)


@cuda.jit
def _ftrl(params, z, n, grads, decay_mask, alpha, beta, l1, l2):
    i = cuda.grid(1)
    if i < params.shape[0]:
        g = np.float64(grads[i])
        n_old = np.float64(n[i])
        n_new = n_old + g * g
        sigma = (math.sqrt(n_new) - math.sqrt(n_old)) / alpha
        zi = z[i] + g - sigma * params[i]
        z[i] = zi
        n[i] = n_new
        l1_i = l1 * decay_mask[i]
        if abs(zi) <= l1_i:
            params[i] = 0.0  # L1 makes this an exact zero
        else:
            sign = 1.0 if zi > 0.0 else -1.0
            params[i] = -(zi - sign * l1_i) / ((beta + math.sqrt(n_new)) / alpha + l2 * decay_mask[i])


def _grid(x):
    return blocks(x.shape[0]), THREADS


def sgd_update(params, buf, grads, decay_mask, lr, momentum, dampening, weight_decay, nesterov, first):
    """SGD as torch.optim.SGD: L2 decay in the gradient, heavy-ball or Nesterov momentum."""
    if buf is None or buf.shape[0] != params.shape[0]:
        buf = params  # unused when momentum == 0 (a kernel argument must still be an array)
    _sgd[_grid(params)](params, buf, grads, decay_mask, float(lr), float(momentum), float(dampening),
                        float(weight_decay), bool(nesterov), bool(first))


def adagrad_update(params, sum_sq, grads, decay_mask, lr, eps, weight_decay):
    """AdaGrad: each coordinate's rate is lr / (sqrt(sum of its squared gradients) + eps)."""
    _adagrad[_grid(params)](params, sum_sq, grads, decay_mask, float(lr), float(eps), float(weight_decay))


def rmsprop_update(params, square_avg, buf, grads, decay_mask, lr, rho, eps, weight_decay, momentum):
    """RMSProp as torch.optim.RMSprop (not centered)."""
    if buf is None or buf.shape[0] != params.shape[0]:
        buf = square_avg  # unused when momentum == 0
    _rmsprop[_grid(params)](params, square_avg, buf, grads, decay_mask, float(lr), float(rho), float(eps),
                            float(weight_decay), float(momentum))


def adam_update(params, m, v, grads, decay_mask, lr, beta1, beta2, eps, weight_decay, decoupled, bc1, bc2):
    """Adam; decoupled=True is AdamW; bc1, bc2 are 1 - beta^t (1.0 without bias correction)."""
    _adam[_grid(params)](params, m, v, grads, decay_mask, float(lr), float(beta1), float(beta2), float(eps),
                         float(weight_decay), bool(decoupled), float(bc1), float(bc2))


def ftrl_update(params, z, n, grads, decay_mask, alpha, beta, l1, l2):
    """FTRL-Proximal (McMahan et al. 2013, Algorithm 1): the weight is a closed form of z and n."""
    _ftrl[_grid(params)](params, z, n, grads, decay_mask, float(alpha), float(beta), float(l1), float(l2))


# ------------------------------------------------------------------ norm and clipping


@cuda.jit
def _sum_sq_partials(partials, x):
    # block b sums x[i]^2 for i = b*R + tid, stepping by the whole grid; partials is (grid,)
    buf = cuda.shared.array(R, np.float64)
    tid = cuda.threadIdx.x
    acc = 0.0
    for i in range(cuda.blockIdx.x * R + tid, x.shape[0], cuda.gridDim.x * R):
        xi = np.float64(x[i])
        acc += xi * xi
    buf[tid] = acc
    block_sum(buf, tid, R)
    if tid == 0:
        partials[cuda.blockIdx.x] = buf[0]


@cuda.jit
def _sum_partials(out, partials):
    # one block: out[0] = sum(partials)
    buf = cuda.shared.array(R, np.float64)
    tid = cuda.threadIdx.x
    acc = 0.0
    for i in range(tid, partials.shape[0], R):
        acc += partials[i]
    buf[tid] = acc
    block_sum(buf, tid, R)
    if tid == 0:
        out[0] = buf[0]


def reduction_scratch(n: int):
    """The float64 scratch sum_of_squares uses for a buffer of n entries: its partials, then the total."""
    return cuda.device_array(min(MAX_BLOCKS, blocks(n, R)) + 1, np.float64)


def sum_of_squares(x, scratch=None) -> float:
    """Sum of x^2 in float64; scratch from reduction_scratch (allocated here when not given)."""
    nb = min(MAX_BLOCKS, blocks(x.shape[0], R))
    if scratch is None:
        scratch = reduction_scratch(x.shape[0])
    partials, total = scratch[:nb], scratch[nb:nb + 1]
    _sum_sq_partials[nb, R](partials, x)
    _sum_partials[1, R](total, partials)
    return float(total.copy_to_host()[0])


def global_norm(grads, scratch=None) -> float:
    """sqrt(sum of squares) over the flat buffer, accumulated in float64."""
    return math.sqrt(sum_of_squares(grads, scratch))


@cuda.jit
def _scale(x, factor):
    i = cuda.grid(1)
    if i < x.shape[0]:
        x[i] = x[i] * factor


@cuda.jit
def _clamp(x, limit, count):
    # count[0] += how many entries were outside [-limit, limit]: a block sum, then one atomic per block
    buf = cuda.shared.array(THREADS, np.int64)
    tid = cuda.threadIdx.x
    i = cuda.grid(1)
    hit = 0
    if i < x.shape[0]:
        xi = x[i]
        if xi > limit:
            x[i] = limit
            hit = 1
        elif xi < -limit:
            x[i] = -limit
            hit = 1
    buf[tid] = hit
    block_sum(buf, tid, THREADS)
    if tid == 0 and buf[0] > 0:
        cuda.atomic.add(count, 0, buf[0])


def scale_inplace(x, factor):
    """x *= factor."""
    _scale[_grid(x)](x, x.dtype.type(factor))


def clamp_inplace(x, limit) -> int:
    """Clamp each entry to [-limit, limit]; returns how many entries were outside."""
    count = cuda.to_device(np.zeros(1, np.int64))
    _clamp[_grid(x)](x, x.dtype.type(limit), count)
    return int(count.copy_to_host()[0])


def clip_gradients(grads, cfg, scratch=None) -> tuple[float, bool]:
    """The GPU twin of simulator.optim.clip.clip_gradients: (norm before clipping, whether anything changed)."""
    from simulator.optim.clip import check_clip

    norm = global_norm(grads, scratch)
    limit = float(cfg.grad_clip)
    if limit <= 0 or not math.isfinite(norm):
        return norm, False
    if cfg.clip_mode == "value":
        return norm, clamp_inplace(grads, limit) > 0
    if cfg.clip_mode != "norm":
        check_clip(cfg)
    if norm > limit:
        scale_inplace(grads, limit / norm)
        return norm, True
    return norm, False
