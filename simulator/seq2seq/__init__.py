"""An encoder-decoder (the original Transformer's three attentions) on the GPT's blocks, and its transduction task.

* `kernels.py`: the new kernels: the head layout moves of a query and a key/value projection of different
  lengths, and the softmax of a rectangular (Tq, Tk) score matrix with padding on the key side.
* `cross_attention.py`: the cross-attention op (queries from the decoder, keys and values from the
  encoder's output), forward and backward, on BLAS for the products.
* `model.py`: `CrossDecoder`, a causal `GPT` whose blocks gain a cross-attention sublayer, and `EncoderDecoder`,
  a bidirectional `GPT` (mask none, its head unused) feeding it.
* `task.py`: the generated transduction task (the invented world's sentences "translated" into a second,
  invented language with another word order, or reversed), its word vocabulary and batches.
* `train.py`: the encoder-decoder and the decoder-only GPT (prompt `source <sep> target`) trained side by side.
"""
