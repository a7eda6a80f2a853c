"""The disk tier of the KV state cache: states evicted from RAM are written to files and loaded back
on a prefix hit.

Why: a conversation's KV state costs ~12 KiB per token with Qwen2.5-0.5B, so the RAM cache holds
tens of conversations, not hundreds. An office server with many users would otherwise re-read a
long history whenever someone comes back after lunch; reading a 20 MB file is far cheaper than
prefilling 1,700 tokens on two cores.

Shape: :class:`DiskSpill` is given evicted :class:`~.kv_cache.CacheEntry` objects by the RAM cache
(``StateCache.on_evict``) and answers ``lookup(key)`` with a :class:`SpilledEntry` whose ``data``
is read from disk only when the scheduler actually restores it. Writing happens on a background
thread (a 40 MB write must not stall everybody's decode step); until written, an entry is served
from memory. Files live under ``<dir>/<fingerprint>/``, the fingerprint naming the model file
(name, size, modification time and a hash of its first MiB), the KV cache types and the llama.cpp
build, and every file records it again: after a restart only states written for exactly this model
and these settings are found; files of another fingerprint, of an older format or torn by a crash
are removed at the first lookup. The directory is byte-capped with LRU eviction and survives a
restart (the index is rebuilt from the file headers; at shutdown the scheduler moves the RAM
cache's and the slots' states here, so a restarted server finds every conversation).

File format: ``XQKV2\\0`` magic, uint16 fingerprint length, the fingerprint (UTF-8), uint32 token
count, the int32 tokens, then the raw state bytes.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import queue
import struct
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Optional

from .kv_cache import CacheEntry, common_prefix_len

log = logging.getLogger(__name__)

MAGIC = b"XQKV2\0"
_HEADER = struct.Struct("<I")
_FP_LEN = struct.Struct("<H")
#: Bytes of the model file hashed into its fingerprint: the GGUF header and metadata, cheaply.
HEAD_BYTES = 1 << 20


def model_fingerprint(model_path: Path, extra: str = "") -> str:
    """Short id of a model file (name, size, mtime, hash of its first MiB) plus ``extra`` (the KV
    cache types and the llama.cpp build)."""
    st = model_path.stat()
    with open(model_path, "rb") as f:
        head = hashlib.sha1(f.read(HEAD_BYTES)).hexdigest()
    raw = f"{model_path.name}|{st.st_size}|{st.st_mtime_ns}|{head}|{extra}"
    return f"{model_path.stem[:40]}-{hashlib.sha1(raw.encode()).hexdigest()[:12]}"


class SpilledEntry:
    """A state on disk (or waiting to be written). ``data`` reads it into a ctypes buffer."""

    def __init__(self, spill: "DiskSpill", key: bytes, path: Path, size: int, data: Any = None):
        self.spill = spill
        self.key = key
        self.path = path
        self.size = size
        self._data = data  # set while the write is pending
        #: Read ahead by :meth:`DiskSpill.prefetch` on a worker thread, handed over once.
        self._prefetched: Any = None

    @property
    def n_tokens(self) -> int:
        return len(self.key) // 4

    @property
    def nbytes(self) -> int:
        return self.size + len(self.key)

    @property
    def data(self) -> Any:
        pending = self._data
        if pending is not None:
            return pending
        ready, self._prefetched = self._prefetched, None
        return ready if ready is not None else self.spill.read(self)


class DiskSpill:
    """Byte-capped LRU of KV states in files. Thread-safe; one background writer thread."""

    def __init__(self, directory: Path, max_bytes: int, fingerprint: str = ""):
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        #: Recorded in every file; a file recording another one is never restored.
        self.fingerprint = fingerprint
        self._fp = fingerprint.encode()
        self._index: OrderedDict[bytes, SpilledEntry] = OrderedDict()
        self._lock = threading.Lock()
        self._queue: "queue.Queue[Optional[SpilledEntry]]" = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self.bytes = 0
        self.hits = 0
        self.writes = 0
        self.loads = 0
        self.errors = 0
        self.prefetches = 0
        self._scanned = False

    # ---- index ---------------------------------------------------------------------------------
    def _scan(self) -> None:
        """Rebuild the index from files left by an earlier run (oldest first), lazily."""
        if self._scanned:
            return
        self._scanned = True
        if not self.dir.is_dir():
            return
        found = []
        for p in self.dir.glob("*.kv"):
            try:
                with open(p, "rb") as f:
                    key = self._read_header(f)
                st = p.stat()
                size = st.st_size - self._offset(key)
                if size <= 0:
                    raise ValueError("no state")
                found.append((st.st_mtime_ns, key, p, size))
            except (OSError, ValueError, struct.error):
                _unlink(p)  # a torn write from a crash: useless, remove it
        for p in self.dir.glob("*.tmp"):
            _unlink(p)
        for _, key, p, size in sorted(found):
            entry = SpilledEntry(self, key, p, size)
            self._index[key] = entry
            self.bytes += entry.nbytes
        self._evict_locked()

    def _read_header(self, f: Any) -> bytes:
        """The tokens of a state file, or ValueError when it is not this fingerprint's."""
        if f.read(len(MAGIC)) != MAGIC:
            raise ValueError("bad magic")
        (n_fp,) = _FP_LEN.unpack(f.read(_FP_LEN.size))
        if f.read(n_fp) != self._fp:
            raise ValueError("another model or other KV settings")
        (n,) = _HEADER.unpack(f.read(_HEADER.size))
        key = f.read(4 * n)
        if len(key) != 4 * n:
            raise ValueError("truncated")
        return key

    def _offset(self, key: bytes) -> int:
        """Where the state bytes start in a file holding ``key``."""
        return len(MAGIC) + _FP_LEN.size + len(self._fp) + _HEADER.size + len(key)

    def __len__(self) -> int:
        """Entries on disk, the files of an earlier run included (the scheduler asks this before
        it looks anything up, so the lazy scan must happen here too)."""
        if not self._scanned and self.enabled:
            with self._lock:
                self._scan()
        return len(self._index)

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def lookup(self, key: bytes, min_tokens: int = 1) -> tuple[Optional[SpilledEntry], int]:
        """The spilled entry sharing the longest prefix with ``key``, and that length."""
        if not self.enabled:
            return None, 0
        with self._lock:
            self._scan()
            best, best_n = None, 0
            for entry in self._index.values():
                n = common_prefix_len(entry.key, key)
                if n > best_n:
                    best, best_n = entry, n
        if best is None or best_n < min_tokens:
            return None, 0
        return best, best_n

    # ---- writing (scheduler thread enqueues, writer thread writes) ------------------------------
    def put(self, entry: CacheEntry) -> None:
        """Take a state evicted from RAM (``StateCache.on_evict``); written in the background."""
        if not self.enabled or entry.nbytes > self.max_bytes:
            return
        name = hashlib.sha1(entry.key).hexdigest() + ".kv"
        spilled = SpilledEntry(self, entry.key, self.dir / name, len(entry.data), data=entry.data)
        with self._lock:
            self._scan()
            n = spilled.n_tokens
            # states it supersedes (their tokens are a prefix of this one) are useless now
            for k in [k for k, e in self._index.items() if e.n_tokens <= n and common_prefix_len(k, entry.key) == e.n_tokens]:
                self._drop_locked(k)
            self._index[entry.key] = spilled
            self.bytes += spilled.nbytes
            self._evict_locked()
            if self._thread is None:
                self._thread = threading.Thread(target=self._writer, name="xiaoq-kv-spill", daemon=True)
                self._thread.start()
        self._queue.put(spilled)

    def _writer(self) -> None:
        while True:
            entry = self._queue.get()
            if entry is None:
                return
            try:
                self._write(entry)
            except OSError as e:
                self.errors += 1
                log.warning("KV spill: writing %s failed: %s", entry.path, e)
                with self._lock:
                    if self._index.get(entry.key) is entry:
                        self._drop_locked(entry.key)
            finally:
                self._queue.task_done()

    def _write(self, entry: SpilledEntry) -> None:
        with self._lock:
            if self._index.get(entry.key) is not entry:
                return  # evicted or superseded before its turn came
            data = entry._data
        if data is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = entry.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(MAGIC)
            f.write(_FP_LEN.pack(len(self._fp)))
            f.write(self._fp)
            f.write(_HEADER.pack(entry.n_tokens))
            f.write(entry.key)
            f.write(memoryview(data).cast("B"))
        os.replace(tmp, entry.path)
        with self._lock:
            if self._index.get(entry.key) is entry:
                entry._data = None  # now served from the file; the RAM goes back to the OS
                self.writes += 1
            else:
                _unlink(entry.path)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every queued state is written (tests, shutdown)."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        done.wait(timeout)

    def close(self) -> None:
        """Finish pending writes and stop the writer thread."""
        if self._thread is not None:
            self.flush()
            self._queue.put(None)
            self._thread.join(10)
            self._thread = None

    # ---- reading -----------------------------------------------------------------------------
    def read(self, entry: SpilledEntry) -> Any:
        """The state bytes of ``entry`` as a ctypes buffer (what ``llama_state_seq_set_data`` takes)."""
        buf = (ctypes.c_uint8 * entry.size)()
        offset = self._offset(entry.key)
        try:
            with open(entry.path, "rb") as f:
                f.seek(offset)
                n = f.readinto(memoryview(buf).cast("B"))
        except OSError as e:
            self.errors += 1
            log.warning("KV spill: reading %s failed: %s", entry.path, e)
            return (ctypes.c_uint8 * 0)()
        self.loads += 1
        if n != entry.size:
            self.errors += 1
            return (ctypes.c_uint8 * 0)()
        return buf

    def prefetch(self, key: bytes, min_tokens: int = 64) -> bool:
        """Read the state a prompt will be restored from before the scheduler needs it.

        Called on a worker thread while the request is on its way to the queue, so the file read
        (tens of MB, from a cold disk tens to hundreds of ms) is not done on the scheduler thread,
        where it would pause every stream. Only a state holding at least half of the prompt is
        read (a resumed conversation's is nearly all of it; a shared opening is not worth a
        read the scheduler may not use). True when a state was read ahead."""
        entry, n = self.lookup(key, max(min_tokens, len(key) // 8))
        if entry is None or entry._data is not None or entry._prefetched is not None:
            return False
        data = self.read(entry)
        with self._lock:
            if self._index.get(entry.key) is not entry or not len(data):
                return False
            entry._prefetched = data
            self.prefetches += 1
        return True

    def take(self, entry: SpilledEntry) -> None:
        """``entry`` was restored into a slot (and goes back to RAM): count the hit, drop the file."""
        self.hits += 1
        with self._lock:
            if self._index.get(entry.key) is entry:
                self._drop_locked(entry.key)

    def discard_prefixes_of(self, key: bytes) -> None:
        """A longer state for the same tokens went into RAM: the shorter ones on disk are useless."""
        if not self._index:
            return
        n = len(key) // 4
        with self._lock:
            for k in [k for k, e in self._index.items() if e.n_tokens <= n and common_prefix_len(k, key) == e.n_tokens]:
                self._drop_locked(k)

    # ---- eviction ----------------------------------------------------------------------------
    def _evict_locked(self) -> None:
        while self.bytes > self.max_bytes and self._index:
            key = next(iter(self._index))
            self._drop_locked(key)

    def _drop_locked(self, key: bytes) -> None:
        entry = self._index.pop(key)
        entry._prefetched = None
        self.bytes -= entry.nbytes
        if entry._data is None:
            _unlink(entry.path)

    def stats(self) -> dict[str, Any]:
        return {
            "kv_disk_entries": len(self._index),
            "kv_disk_bytes": self.bytes,
            "kv_disk_capacity_bytes": self.max_bytes,
            "kv_disk_hits_total": self.hits,
            "kv_disk_writes_total": self.writes,
            "kv_disk_loads_total": self.loads,
            "kv_disk_errors_total": self.errors,
            "kv_disk_prefetches_total": self.prefetches,
        }


def _unlink(p: Path) -> None:
    try:
        p.unlink()
    except OSError:
        pass
