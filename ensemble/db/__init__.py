"""Where Ensemble keeps its data: one SQLite file (the default) or one PostgreSQL database.

Checkpoints, the audit trail, the model cache, the publish journal and (on PostgreSQL) the run
queue all live in the database a `Database` names, so every process pointed at it sees the same
threads.
"""

from ensemble.db.url import Database, DatabaseLike, database

__all__ = ["Database", "DatabaseLike", "database"]
