"""Text data: the built-in corpus, text files, the character tokenizer and batch sampling."""

from simulator.data.corpus import builtin_corpus
from simulator.data.dataset import TextDataset, load_dataset, read_text_file, split_sizes
from simulator.data.tokenizer import CharTokenizer, DataError

__all__ = ["CharTokenizer", "DataError", "TextDataset", "builtin_corpus", "load_dataset", "read_text_file",
           "split_sizes"]
