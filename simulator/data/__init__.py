"""Text data: the built-in corpus, text files, the tokenizers (char, bpe, wordpiece) and batch sampling."""

from simulator.data.bpe import BPETokenizer
from simulator.data.corpus import builtin_corpus
from simulator.data.dataset import TextDataset, load_dataset, read_text_file, split_sizes
from simulator.data.tokenizer import CharTokenizer, DataError
from simulator.data.tokenizers import build_tokenizer, tokenizer_from_json
from simulator.data.wordpiece import WordPieceTokenizer

__all__ = ["BPETokenizer", "CharTokenizer", "DataError", "TextDataset", "WordPieceTokenizer", "build_tokenizer",
           "builtin_corpus", "load_dataset", "read_text_file", "split_sizes", "tokenizer_from_json"]
