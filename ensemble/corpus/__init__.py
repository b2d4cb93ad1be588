"""Searchable text corpus that researcher agents cite by stable passage id.

The default corpus is Python's own reference documentation (language topics and standard-library
docstrings); a folder of .md/.txt/.rst/.html files can be used instead. Both are indexed with
SQLite FTS5 in the app's database.
"""

from ensemble.corpus.index import CorpusError, CorpusIndex, IndexStats, Passage, open_corpus

__all__ = ["CorpusError", "CorpusIndex", "IndexStats", "Passage", "open_corpus"]
