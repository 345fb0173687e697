"""Word-level text statistics: TF-IDF (counting words before any learned vector)."""
