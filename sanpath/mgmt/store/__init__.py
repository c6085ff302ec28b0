"""The pool store (SQLAlchemy 2, async; Alembic migrations): a SQLite file by default, PostgreSQL for a
pool of many hosts. ``Store`` owns every row; ``sanpath.mgmt.places`` says where the default store and key live."""

from .store import Store

__all__ = ["Store"]
