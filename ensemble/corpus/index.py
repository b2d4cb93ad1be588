"""SQLite FTS5 index of corpus passages, stored next to the LangGraph checkpoints.

Researchers cite passage ids, so ids are derived only from the source (`<doc>#<n>`) and survive
rebuilds. The index lives in the app's SQLite file under `corpus_*` tables; several corpora
(the default Python corpus and any number of folders) share those tables, told apart by key.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ensemble.corpus import ranking, sources
from ensemble.errors import DatabaseError, EnsembleError
from ensemble.persistence import connect
from ensemble.text import HOW_TO_WORDS, STOPWORDS, keywords_in, operator_words, plain_words

logger = logging.getLogger(__name__)

TITLE_WEIGHT = 4.0
"""bm25 weight of the title column relative to text (1.0): a title hit means "about this"."""

MAX_QUERY_TOKENS = 64
"""Longer queries are cut: more OR terms only slow the search without improving ranking."""

MAX_K = 100

CANDIDATES_PER_HIT = 8
MIN_CANDIDATES = 60
"""bm25 picks this many candidates per wanted hit, which `ranking` then re-orders."""

IGNORED = STOPWORDS | HOW_TO_WORDS
"""Function words, and the words every how-to question uses ("how does X work"): not searched."""

_SCHEMA = """
DROP TRIGGER IF EXISTS corpus_passages_ai;
DROP TRIGGER IF EXISTS corpus_passages_ad;
DROP TRIGGER IF EXISTS corpus_passages_au;
DROP TABLE IF EXISTS corpus_fts;
CREATE TABLE IF NOT EXISTS corpus_meta(
    key TEXT PRIMARY KEY,
    built_at REAL NOT NULL,
    documents INTEGER NOT NULL,
    passages INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS corpus_documents(
    corpus_key TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY(corpus_key, doc_id)
);
CREATE TABLE IF NOT EXISTS corpus_passages(
    rowid INTEGER PRIMARY KEY,
    corpus_key TEXT NOT NULL,
    passage_id TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    title TEXT NOT NULL,
    source TEXT NOT NULL,
    text TEXT NOT NULL,
    UNIQUE(corpus_key, passage_id)
);
CREATE INDEX IF NOT EXISTS corpus_passages_doc ON corpus_passages(corpus_key, doc_id);
CREATE VIRTUAL TABLE IF NOT EXISTS corpus_fts2 USING fts5(
    title, text, content='corpus_passages', content_rowid='rowid',
    tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS corpus_passages_ai2 AFTER INSERT ON corpus_passages BEGIN
    INSERT INTO corpus_fts2(rowid, title, text) VALUES (new.rowid, new.title, new.text);
END;
CREATE TRIGGER IF NOT EXISTS corpus_passages_ad2 AFTER DELETE ON corpus_passages BEGIN
    INSERT INTO corpus_fts2(corpus_fts2, rowid, title, text)
    VALUES ('delete', old.rowid, old.title, old.text);
END;
CREATE TRIGGER IF NOT EXISTS corpus_passages_au2 AFTER UPDATE ON corpus_passages BEGIN
    INSERT INTO corpus_fts2(corpus_fts2, rowid, title, text)
    VALUES ('delete', old.rowid, old.title, old.text);
    INSERT INTO corpus_fts2(rowid, title, text) VALUES (new.rowid, new.title, new.text);
END;
"""


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone()
    return row is not None


class CorpusError(EnsembleError):
    """A corpus cannot be used: missing folder, no indexable files, unreadable database."""


@dataclass(frozen=True)
class Passage:
    """A citable piece of a document.

    Attributes:
        id: Stable id: `pydoc:<topic>#<n>`, `stdlib:<module>[.<Qualname>]#<n>` or
            `file:<relative/posix/path>#<n>`.
        title: Module/class/function name, topic name, or a file's first heading or name.
        source: Human-readable location: module name, `pydoc topic <name>` or relative path.
        text: The passage text.
        score: Relevance of a search hit, higher is better (0.0 when not from a search).
    """

    id: str
    title: str
    source: str
    text: str
    score: float = 0.0


@dataclass(frozen=True)
class IndexStats:
    """What `CorpusIndex.ensure` found: the corpus's counts, and what this call (re)indexed."""

    corpus_key: str
    documents: int
    passages: int
    indexed_now: int
    seconds: float


def query_sequence(query: str) -> list[str]:
    """Return the searchable words of free user text as written, repeats kept.

    Words are lowercased; one-character words and stopwords are dropped so "what is the X" finds
    X rather than every passage. Adjacency matters for compounds: "abstract base class with
    abstract methods" has "abstract methods" (`abstractmethod`).
    """
    words: list[str] = []
    distinct: set[str] = set()
    for token in plain_words(query):
        if len(token) > 1 and token not in IGNORED:
            distinct.add(token)
            if len(distinct) > MAX_QUERY_TOKENS:
                break
            words.append(token)
    return words


def _opening(passage_id: str, text: str) -> str:
    """The summary sentence of a document's first passage; "" for any other passage."""
    return ranking.summary(text) if passage_id.endswith("#1") else ""


def fts_query(query: str) -> str:
    """Turn free text into a safe FTS5 expression: quoted tokens joined by OR ("" if none).

    Quoting makes FTS5 operators and syntax in user text (`AND`, `NEAR(`, `"`) plain words.
    Python keywords used as keywords ("the with statement") are searched too.
    """
    words = dict.fromkeys([*query_sequence(query), *keywords_in(query), *operator_words(query)])
    return " OR ".join('"' + token.replace('"', '""') + '"' for token in words)


@dataclass
class _Planned:
    """A folder file that must be written: new or changed content, or only new stat data."""

    file: sources.FolderFile
    sha256: str
    document: sources.Document | None  # None: content unchanged, only size/mtime to update


class CorpusIndex:
    """Search index of one corpus: the default Python docs or a folder of text files.

    One instance owns one SQLite connection, guarded by a lock so a thread pool of researchers
    can share it (use `open_corpus` to get the shared instance).
    """

    def __init__(
        self, db_path: str | os.PathLike[str], corpus_dir: str | os.PathLike[str] | None = None
    ) -> None:
        """Describe the corpus; fail fast on a bad folder but leave the database untouched.

        Args:
            db_path: The app's SQLite file (created with its folder on first use).
            corpus_dir: A folder of .md/.txt/.rst/.html files, or None for Python's docs.

        Raises:
            CorpusError: `corpus_dir` does not exist or is not a folder.
        """
        self.db_path = Path(db_path).expanduser()
        self.corpus_dir: Path | None = None
        if corpus_dir is not None:
            folder = Path(corpus_dir).expanduser()
            if not folder.is_dir():
                raise CorpusError(f"corpus folder not found: {folder}")
            self.corpus_dir = folder.resolve()
        self.key = (
            f"dir:{self.corpus_dir}" if self.corpus_dir is not None else sources.python_corpus_key()
        )
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._ensured = False

    def __repr__(self) -> str:
        """Show the database and corpus key, which identify the index in logs."""
        return f"CorpusIndex(db_path={str(self.db_path)!r}, key={self.key!r})"

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        try:
            conn = connect(self.db_path)  # the app's settings: WAL, the same busy timeout
        except DatabaseError as exc:
            raise CorpusError(f"cannot open corpus database {self.db_path}: {exc}") from exc
        conn.isolation_level = None  # transactions are explicit (BEGIN IMMEDIATE)
        try:
            migrating = _has_table(conn, "corpus_passages") and not _has_table(conn, "corpus_fts2")
            conn.executescript(_SCHEMA)
            if migrating:  # an index built before stemming: the same passages, re-tokenized
                conn.execute("INSERT INTO corpus_fts2(corpus_fts2) VALUES ('rebuild')")
        except sqlite3.Error as exc:
            conn.close()
            raise CorpusError(f"cannot use corpus database {self.db_path}: {exc}") from exc
        self._conn = conn
        return conn

    def close(self) -> None:
        """Close the connection; a later call reopens it, so shared instances stay usable."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def ensure(self) -> IndexStats:
        """Build the index or bring it up to date with the source; cheap when nothing changed.

        The default corpus is fixed per Python version, so once built this is one key lookup.
        A folder is re-scanned: only added or changed files are re-read and re-indexed, and
        deleted files are dropped. Writes happen in one `BEGIN IMMEDIATE` transaction so another
        process building the same corpus cannot interleave.

        Raises:
            CorpusError: The folder vanished or has no indexable files, or the database is
                unusable.
        """
        started = time.perf_counter()
        with self._lock:
            conn = self._connection()
            try:
                if self.corpus_dir is None:
                    indexed = self._ensure_default(conn)
                else:
                    indexed = self._ensure_folder(conn, self.corpus_dir)
                row = conn.execute(
                    "SELECT documents, passages FROM corpus_meta WHERE key = ?", (self.key,)
                ).fetchone()
            except sqlite3.Error as exc:
                raise CorpusError(f"corpus database error in {self.db_path}: {exc}") from exc
            self._ensured = True
        documents, passages = row if row else (0, 0)
        return IndexStats(self.key, documents, passages, indexed, time.perf_counter() - started)

    def _ensure_default(self, conn: sqlite3.Connection) -> int:
        if self._is_built(conn):
            return 0
        documents = list(sources.iter_default_documents())  # slow part: outside the write lock
        with conn:  # one transaction: committed at the end, rolled back on any exception
            conn.execute("BEGIN IMMEDIATE")
            if self._is_built(conn):  # another process built it meanwhile
                conn.execute("ROLLBACK")
                return 0
            for table in ("corpus_passages", "corpus_documents", "corpus_meta"):
                column = "key" if table == "corpus_meta" else "corpus_key"
                conn.execute(  # this one, and older revisions of the default corpus
                    f"DELETE FROM {table} WHERE {column} = ? OR {column} LIKE 'python-%'",
                    (self.key,),
                )
            conn.executemany(
                "INSERT INTO corpus_documents VALUES (?, ?, ?, 0, 0, ?)",
                (
                    (self.key, d.doc_id, d.source, hashlib.sha256(d.text.encode()).hexdigest())
                    for d in documents
                ),
            )
            self._insert_passages(conn, documents)
            self._write_meta(conn)
        logger.info("indexed %d documents of %s", len(documents), self.key)
        return len(documents)

    def built(self) -> bool:
        """Whether this corpus was indexed before (a folder may still have changed files)."""
        with self._lock:
            try:
                return self._is_built(self._connection())
            except sqlite3.Error as exc:
                raise CorpusError(f"corpus database error in {self.db_path}: {exc}") from exc

    def _is_built(self, conn: sqlite3.Connection) -> bool:
        row = conn.execute("SELECT 1 FROM corpus_meta WHERE key = ?", (self.key,)).fetchone()
        return row is not None

    def _ensure_folder(self, conn: sqlite3.Connection, folder: Path) -> int:
        if not folder.is_dir():
            raise CorpusError(f"corpus folder not found: {folder}")
        files = sources.scan_folder(folder)
        if not files:
            raise CorpusError(f"no .md/.txt/.rst/.html files in {folder}")
        cache: dict[tuple[str, int, int], tuple[str, sources.Document]] = {}
        # Plan without the write lock (reading files can be slow), then re-plan inside the
        # transaction against fresh rows; files already read come from the cache.
        planned, deleted = self._plan(conn, files, cache)
        if not planned and not deleted and self._is_built(conn):
            return 0
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            planned, deleted = self._plan(conn, files, cache)
            changed = [p.document for p in planned if p.document is not None]
            for table, doc_ids in (
                ("corpus_passages", [*deleted, *(d.doc_id for d in changed)]),
                ("corpus_documents", deleted),
            ):
                conn.executemany(
                    f"DELETE FROM {table} WHERE corpus_key = ? AND doc_id = ?",
                    ((self.key, doc_id) for doc_id in doc_ids),
                )
            self._insert_passages(conn, changed)
            conn.executemany(
                "INSERT OR REPLACE INTO corpus_documents VALUES (?, ?, ?, ?, ?, ?)",
                (
                    (
                        self.key,
                        f"file:{p.file.relpath}",
                        p.file.relpath,
                        p.file.size,
                        p.file.mtime_ns,
                        p.sha256,
                    )
                    for p in planned
                ),
            )
            self._write_meta(conn)
        if changed or deleted:
            logger.info(
                "corpus %s: %d files indexed, %d removed", self.key, len(changed), len(deleted)
            )
        return len(changed)

    def _plan(
        self,
        conn: sqlite3.Connection,
        files: Sequence[sources.FolderFile],
        cache: dict[tuple[str, int, int], tuple[str, sources.Document]],
    ) -> tuple[list[_Planned], list[str]]:
        stored = {
            doc_id: (size, mtime_ns, sha)
            for doc_id, size, mtime_ns, sha in conn.execute(
                "SELECT doc_id, size, mtime_ns, sha256 FROM corpus_documents WHERE corpus_key = ?",
                (self.key,),
            )
        }
        planned: list[_Planned] = []
        present: set[str] = set()
        for file in files:
            doc_id = f"file:{file.relpath}"
            old = stored.get(doc_id)
            if old is not None and old[0] == file.size and old[1] == file.mtime_ns:
                present.add(doc_id)
                continue
            cache_key = (file.relpath, file.size, file.mtime_ns)
            if cache_key not in cache:
                try:
                    data = file.path.read_bytes()
                except OSError as exc:  # vanished or unreadable since the scan: leave as is
                    logger.warning("skipping unreadable file %s: %s", file.path, exc)
                    if old is not None:
                        present.add(doc_id)
                    continue
                cache[cache_key] = (  # a fingerprint tells a touched file from a changed one
                    hashlib.sha256(data).hexdigest(),
                    sources.document_from_bytes(file.relpath, data),
                )
            sha, document = cache[cache_key]
            present.add(doc_id)
            unchanged = old is not None and old[2] == sha
            planned.append(_Planned(file, sha, None if unchanged else document))
        return planned, sorted(set(stored) - present)

    def _insert_passages(
        self, conn: sqlite3.Connection, documents: Iterable[sources.Document]
    ) -> None:
        conn.executemany(
            "INSERT INTO corpus_passages(corpus_key, passage_id, doc_id, title, source, text) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                (self.key, f"{doc.doc_id}#{n}", doc.doc_id, doc.title, doc.source, chunk)
                for doc in documents
                for n, chunk in enumerate(sources.chunk_text(doc.text), start=1)
            ),
        )

    def _write_meta(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO corpus_meta(key, built_at, documents, passages) VALUES ("
            "?, ?, (SELECT count(*) FROM corpus_documents WHERE corpus_key = ?), "
            "(SELECT count(*) FROM corpus_passages WHERE corpus_key = ?))",
            (self.key, time.time(), self.key, self.key),
        )

    def _ensure_once(self) -> sqlite3.Connection:
        with self._lock:
            if not self._ensured:
                self.ensure()
            return self._connection()

    def search(self, query: str, k: int = 5) -> list[Passage]:
        """Return up to `k` passages best matching free text, best first.

        Any text is accepted: it is reduced to words that are matched with OR and ranked by
        bm25 with titles weighted higher. Returns [] when nothing searchable remains.

        Raises:
            CorpusError: Only when the index cannot be built or opened (see `ensure`).
        """
        if not isinstance(query, str):
            return []
        expression = fts_query(query)
        try:
            limit = max(0, min(int(k), MAX_K))
        except (TypeError, ValueError):
            limit = 5
        if not expression or limit == 0:
            return []
        with self._lock:
            conn = self._ensure_once()
            expression = self._expanded(conn, query, expression)
            try:
                rows = conn.execute(
                    "SELECT p.passage_id, p.doc_id, p.title, p.source, p.text, "
                    f"bm25(corpus_fts2, {TITLE_WEIGHT}, 1.0) AS rank "
                    "FROM corpus_fts2 JOIN corpus_passages AS p ON p.rowid = corpus_fts2.rowid "
                    "WHERE corpus_fts2 MATCH ? AND p.corpus_key = ? "
                    "ORDER BY rank LIMIT ?",
                    (expression, self.key, max(limit * CANDIDATES_PER_HIT, MIN_CANDIDATES)),
                ).fetchall()
            except sqlite3.OperationalError as exc:
                logger.warning("corpus search failed for %r: %s", query[:200], exc)
                return []
        words = query_sequence(query)
        named = ranking.names_in(query, words)
        scored = [
            (score, doc, Passage(pid, title, source, text, score))
            for pid, doc, title, source, text, rank in rows
            for score in [ranking.score(-rank, doc, title, words, named, _opening(pid, text))]
        ]
        return ranking.diversify(scored)[:limit]

    def _expanded(self, conn: sqlite3.Connection, query: str, expression: str) -> str:
        """Add the corpus's own compound words the query spells apart ("named tuple").

        A candidate compound is kept only when the index has it, so expansion never adds a word
        the documents do not use.
        """
        found = []
        for word in ranking.compounds(query_sequence(query)):
            try:
                row = conn.execute(  # an index lookup; the search itself filters the corpus
                    "SELECT rowid FROM corpus_fts2 WHERE corpus_fts2 MATCH ? LIMIT 1",
                    (f'"{word}"',),
                ).fetchone()
            except sqlite3.OperationalError:
                row = None
            if row:
                found.append(f'"{word}"')
        return " OR ".join([expression, *found]) if found else expression

    def get(self, passage_id: str) -> Passage | None:
        """Return the passage with this id in this corpus, or None (e.g. a stale citation)."""
        return self.get_many([passage_id]).get(passage_id)

    def get_many(self, ids: Iterable[str]) -> dict[str, Passage]:
        """Return the passages found among `ids`, keyed by id; unknown ids are left out."""
        wanted = list(dict.fromkeys(i for i in ids if isinstance(i, str)))
        found: dict[str, Passage] = {}
        if not wanted:
            return found
        with self._lock:
            conn = self._ensure_once()
            try:
                for start in range(0, len(wanted), 500):
                    batch = wanted[start : start + 500]
                    marks = ",".join("?" * len(batch))
                    for pid, title, source, text in conn.execute(
                        "SELECT passage_id, title, source, text FROM corpus_passages "
                        f"WHERE corpus_key = ? AND passage_id IN ({marks})",
                        (self.key, *batch),
                    ):
                        found[pid] = Passage(pid, title, source, text)
            except sqlite3.Error as exc:
                raise CorpusError(f"corpus database error in {self.db_path}: {exc}") from exc
        return found


_cache: dict[tuple[str, str | None], CorpusIndex] = {}
_cache_lock = threading.Lock()


def open_corpus(
    db_path: str | os.PathLike[str], corpus_dir: str | os.PathLike[str] | None = None
) -> CorpusIndex:
    """Return the process-wide index for this database and corpus, creating it once.

    Parallel researchers then share one connection and one build instead of racing.

    Raises:
        CorpusError: `corpus_dir` does not exist or is not a folder.
    """
    db = str(db_path)
    db_key = db if db == ":memory:" else str(Path(db).expanduser().resolve())
    dir_key = None if corpus_dir is None else str(Path(corpus_dir).expanduser().resolve())
    with _cache_lock:
        if (db_key, dir_key) not in _cache:
            _cache[db_key, dir_key] = CorpusIndex(db_path, corpus_dir)
        return _cache[db_key, dir_key]
