"""A BERT-style encoder on the GPT's kernels: the same blocks with bidirectional attention (`mask: none`),
token + segment + position embeddings, masked-language-model targets and a sentence-pair head on [CLS].

* `kernels.py`: the one new kernel pair, the segment embedding (x += wse[segment]).
* `pairs.py`: a text as documents of sentences in WordPiece tokens; NSP and SOP pairs packed as
  `[CLS] A [SEP] B [SEP] [PAD]...`.
* `masking.py`: which positions MLM predicts (token, whole-word or span masking) and the 80/10/10 rule.
* `model.py`: `Encoder`, a `GPT` whose embedding adds the segment table and whose head adds the pair head
  (pooler + classifier on [CLS]); the MLM loss counts the chosen positions only.
* `probe.py`: the bag-of-words logistic-regression baseline of the pair tasks (no order information).
"""
