"""Conversation storage in SQLite (the only package that writes SQL).

``Store(path)`` opens (and migrates) the database; its methods are blocking and thread-safe, so
async callers use ``await asyncio.to_thread(store.method, ...)``. ``ReplyWriter`` saves a streaming
reply at most once per second.
"""

from xiaoq.store.conversations import PgStore, ReplyWriter, Store, iter_turns, open_store, utc_now
from xiaoq.store.db import Database

__all__ = ["Database", "PgStore", "ReplyWriter", "Store", "iter_turns", "open_store", "utc_now"]
