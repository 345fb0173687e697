"""CPU kernels: numba forward/backward pairs; matrix products go to numpy's BLAS.

Shape alphabet: B batch, T time, C channels, NH heads, HS head size, V vocab,
N = B*T rows. Conventions (as llm.c): outputs and caches first, then inputs,
then weights, then sizes; kernels never allocate.

The backward contract (llm.c's): a backward kernel adds (`+=`) into every
gradient it is given, of its inputs and of its parameters, so a tensor read by
two ops gets the sum of both; the model zeroes all gradients once per step.
BLAS writes a product and cannot add one, so the kernels built on a product
(linear_backward, attention_heads_backward) write it into a gradient that holds
none yet, which is the same sum (0 + x == x), and linear_backward takes a
scratch buffer to add it onto one that does. Kernels marked *in place* turn one
gradient into another inside its buffer (rope_backward,
attention_softmax_backward); the loss writes dlogits (the gradient starts there).
"""
