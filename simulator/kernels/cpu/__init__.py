"""CPU kernels: numba forward/backward pairs; matrix products go to numpy's BLAS.

Shape alphabet: B batch, T time, C channels, NH heads, HS head size, V vocab,
N = B*T rows. Conventions (as llm.c): outputs and caches first, then inputs,
then weights, then sizes; kernels never allocate; parameter gradients and
activation gradients are accumulated (`+=`) unless a kernel says it *writes*.
"""
