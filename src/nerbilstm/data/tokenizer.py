"""A rule-based tokenizer that splits raw text the way the GMB corpus is tokenized.

Conventions learnt from the GMB file (``ner_dataset.csv``):

* punctuation is split off: ``, ; : ! ? " ( ) [ ]`` and the sentence-final period;
  runs of periods (``...``) and of hyphens (``--``) are one token each;
* ``$``, ``#`` (the corpus's pound sign) and ``%`` are tokens of their own
  (``$ 570 million``, ``30 %``);
* the possessive and other clitics are split off: ``Britain 's``, ``rebels '``,
  ``they 're``, ``I 'm``; negation is split as in the Penn Treebank:
  ``does n't``, ``ca n't``, ``wo n't``;
* abbreviations and initialisms keep their periods (``U.S.``, ``Mr.``, ``a.m.``,
  ``J.``, ``anti-U.S.``), also at the end of a sentence (GMB ends such a sentence
  with ``U.S.`` and no separate period);
* numbers keep their commas, decimal points and colons (``10,000``, ``1,00,000``,
  ``3.5``, ``10:30``); hyphenated words stay whole (``al-Qaida``, ``two-day``,
  ``U.S.-led``, ``06-Mar``); apostrophes inside words stay (``Shi'ite``);
* a slash between words is split (``HIV / AIDS``), between digits it is kept (``20/20``);
* URLs and e-mail addresses stay whole.

Whatever the input, every token is a slice of it (``text[start:end]``), tokens are
in order and do not overlap, tokens never contain whitespace (Unicode whitespace as
``str.isspace`` defines it) and every other character belongs to exactly one token.
The work is linear in the length of the input: the regular expressions used have no
nested quantifiers and the per-token checks look at a bounded number of characters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

__all__ = ["Token", "tokenize", "split_sentences", "ABBREVIATIONS"]


class Token(NamedTuple):
    text: str
    start: int
    end: int


# Python's ``\s`` (str patterns) is exactly ``str.isspace``.
_CHUNK = re.compile(r"\S+")

# Characters (or runs) that are always a token of their own inside a chunk.
_HARD = re.compile(
    r"""
      \.{2,}                       # ... ..
    | -{2,}                        # -- ---
    | (?<!\d)[,:/] | [,:/](?!\d)   # , : / except between digits (10,000  10:30  20/20)
    | [\"()\[\]{};!?`“”„«»–—…$£€¥#%]
    """,
    re.VERBOSE,
)

_QUOTES = "'‘’"
# A chunk that starts with an apostrophe and is a clitic or a decade: 's 'll 're 've
# 'm 'd 'n 't 'em '80s.  Looked at on a bounded prefix only.
_LEADING_CLITIC = re.compile(r"['’](?:s|ll|re|ve|m|d|n|t|em|\d0s)(?![^\W_])", re.IGNORECASE)
_TRAILING_CLITICS = ("'s", "'ll", "'re", "'ve", "'m", "'d")
# Initialisms: U.S  a.m  H.I.V  Ph.D  S.p.A  (the final period is checked by the caller)
_INITIALISM = re.compile(r"(?:[^\W\d_]{1,2}\.)+[^\W\d_]{1,2}")

ABBREVIATIONS = frozenset(
    """
    Mr Mrs Ms Dr St Jr Sr Gen Lt Col Capt Cmdr Cpl Sgt Maj Brig Adm Gov Sen Rep Cong Rev
    Prof Pres Hon Messrs Mt Ft Ave Blvd Rd Corp Inc Co Cos Ltd Bros No Nos Vol Fig Dept
    Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec
    Ala Ariz Ark Calif Colo Conn Del Fla Ga Ill Il Ind Kan Kans Ky La Md Mass Mich Minn
    Miss Mo Mont Neb Nev Okla Ore Pa Penn Tenn Tex Va Vt Wash Wis Wyo
    corp ca approx vs cf al
    """.split()
)

_URL_HINTS = ("://", "@")
_URL_LEAD = "\"'([{<“‘«"
_URL_TRAIL = "\"'.,;:!?)]}>”’»"


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into GMB-style tokens with character offsets."""
    if not isinstance(text, str):
        raise TypeError(f"tokenize() needs a str, got {type(text).__name__}")
    out: list[Token] = []
    append, make = out.append, _make_token
    for m in _CHUNK.finditer(text):
        chunk = m.group()
        if len(chunk) == 1 or chunk.isalnum():  # the common cases: one character, a plain word
            start, end = m.span()
            append(make(Token, (chunk, start, end)))
        else:
            _chunk(text, m.start(), m.end(), out)
    return out


_make_token = tuple.__new__  # Token(...) without the keyword-argument handling of its __new__


def _chunk(text: str, start: int, end: int, out: list[Token]) -> None:
    chunk = text[start:end]
    if any(h in chunk for h in _URL_HINTS) or chunk[:4].lower() == "www.":
        _url(text, start, end, out)
        return
    pos = start
    for m in _HARD.finditer(chunk):
        a, b = start + m.start(), start + m.end()
        if a > pos:
            _piece(text, pos, a, out)
        out.append(Token(text[a:b], a, b))
        pos = b
    if end > pos:
        _piece(text, pos, end, out)


def _url(text: str, start: int, end: int, out: list[Token]) -> None:
    """A URL or e-mail address: split off surrounding punctuation, keep the rest whole."""
    a, b = start, end
    while a < b and text[a] in _URL_LEAD:
        out.append(Token(text[a], a, a + 1))
        a += 1
    tail: list[Token] = []
    while b > a and text[b - 1] in _URL_TRAIL:
        tail.append(Token(text[b - 1], b - 1, b))
        b -= 1
    if b > a:
        out.append(Token(text[a:b], a, b))
    out.extend(reversed(tail))


def _is_abbreviation(core: str) -> bool:
    """Whether ``core + "."`` is an abbreviation that keeps its period."""
    head, hyphen, seg = core.rpartition("-")  # anti-U.S.  Lt.-Gen.
    if not seg or len(seg) > 12:
        return False
    if _INITIALISM.fullmatch(seg):
        return True
    if hyphen and not head.endswith("."):
        return False  # 06-Feb.  Group-B.  are a word and a sentence-final period
    if len(seg) == 1:
        return seg.isalpha() and seg != "I"  # J.  F.  (but the pronoun: "... and I.")
    return seg in ABBREVIATIONS


def _piece(text: str, start: int, end: int, out: list[Token]) -> None:
    """A run of characters without whitespace or hard punctuation."""
    a, b = start, end
    # Leading quotes, unless they begin a clitic ('s 'll '80s).
    while a < b and text[a] in _QUOTES:
        if _LEADING_CLITIC.match(text[a : min(b, a + 5)]):
            break
        out.append(Token(text[a], a, a + 1))
        a += 1
    # Trailing quotes and a sentence-final period.
    tail: list[Token] = []
    while b - a > 1:
        last = text[b - 1]
        if last in _QUOTES:
            pass
        elif last == "." and not _is_abbreviation(text[a : b - 1]):
            pass
        else:
            break
        tail.append(Token(last, b - 1, b))
        b -= 1
    if b > a:
        # Clitics at the end of the word: does|n't  Iraq|'s  they|'re
        lower = text[max(a, b - 4) : b].lower().replace("’", "'")
        cut = b
        if lower.endswith("n't") and b - a > 3 and text[b - 4].isalpha():
            cut = b - 3
        else:
            for suffix in _TRAILING_CLITICS:
                if lower.endswith(suffix) and b - a > len(suffix):
                    cut = b - len(suffix)
                    break
        if cut < b:
            out.append(Token(text[a:cut], a, cut))
            out.append(Token(text[cut:b], cut, b))
        else:
            out.append(Token(text[a:b], a, b))
    out.extend(reversed(tail))


_FINAL = frozenset(".!?…")
_LINE_BREAK = re.compile(r"[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_CLOSERS_ALWAYS = frozenset(")]}”’»")
_PAIRS = {")": "(", "]": "[", "}": "{"}


def _is_final(tok: str) -> bool:
    return bool(tok) and set(tok) <= _FINAL


def split_sentences(tokens: list[Token], text: str, max_len: int = 200) -> list[list[Token]]:
    """Group ``tokens`` (from :func:`tokenize` on ``text``) into sentences.

    A sentence ends after a token made of ``. ! ?`` (or ``…``), together with the
    closing quotes/brackets that follow it; abbreviations (``U.S.``, ``Mr.``, ``J.``)
    are single tokens and so do not end a sentence, and a lone ``.`` right after
    ``Mr``/``Dr``/a single capital letter is not a sentence end either.  A closing
    quote or bracket followed by a lower-case word (``"Why?" she asked.``) does not end
    the sentence.  A line
    break between two tokens also ends a sentence.  A sentence longer than
    ``max_len`` tokens is cut into chunks of at most ``max_len``.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}")
    sentences: list[list[Token]] = []
    cur: list[Token] = []
    ended = False  # cur ended with final punctuation; closers may still follow
    quotes = 0  # number of " in cur (odd: a quotation is open)
    opened = {"(": 0, "[": 0, "{": 0}

    def close() -> None:
        nonlocal cur, ended, quotes
        if cur:
            sentences.append(cur)
        cur = []
        ended = False
        quotes = 0
        for k in opened:
            opened[k] = 0

    breaks = _LINE_BREAK.search(text) is not None  # most texts have none: no search per token
    for tok in tokens:
        if cur:
            prev = cur[-1]
            if breaks and _LINE_BREAK.search(text, prev.end, tok.start):
                close()
            elif ended:
                t = tok.text
                absorb = (
                    (t == '"' and quotes % 2 == 1)
                    or (t in _PAIRS and opened[_PAIRS[t]] > 0)
                    or (t in _CLOSERS_ALWAYS and t not in _PAIRS)
                    or (t in ("'", "`") and tok.start == prev.end)
                )
                if absorb:
                    pass
                elif tok.text[:1].islower() and not _is_final(prev.text):
                    ended = False  # "Why?" she asked.  (a quotation ends, the sentence goes on)
                else:
                    close()
        if len(cur) >= max_len:
            close()
        cur.append(tok)
        t = tok.text
        if t == '"':
            quotes += 1
        elif t in opened:
            opened[t] += 1
        elif t in _PAIRS and opened[_PAIRS[t]] > 0:
            opened[_PAIRS[t]] -= 1
        if t[:1] in _FINAL and _is_final(t):  # the first test alone settles most tokens
            if t == "." and len(cur) >= 2 and cur[-2].end == tok.start and _abbrev_before(cur[-2].text):
                continue
            ended = True
    close()
    return sentences


def _abbrev_before(word: str) -> bool:
    return (len(word) == 1 and word.isupper()) or word in ABBREVIATIONS


MAX_SENTENCE_TOKENS = 200  # longer sentences are tagged in pieces of this many tokens


def text_and_sentences(item, k: int) -> tuple[str, list[list[Token]]]:
    """An input as (its text, its sentences as tokens with offsets into that text): raw text is
    tokenized and split; a token list is joined by spaces and cut into MAX_SENTENCE_TOKENS pieces."""
    text, sentences = text_and_pieces(item, k)
    return text, list(sentences)


def text_and_pieces(item, k: int) -> tuple[str, Sequence[list[Token]]]:
    """As ``text_and_sentences``; the pieces of a token list are made as they are asked for
    (``TokenPieces``)."""
    if isinstance(item, str):
        return item, split_sentences(tokenize(item), item, MAX_SENTENCE_TOKENS)
    if not isinstance(item, (list, tuple)) or not all(isinstance(t, str) for t in item):
        raise TypeError(f"input {k} is {type(item).__name__}: expected a text (str) or a list of tokens (str)")
    return " ".join(item), TokenPieces(item)


class TokenPieces(Sequence):
    """A token list's pieces of MAX_SENTENCE_TOKENS tokens, each made when asked for, with
    offsets into the tokens joined by single spaces; ``lengths``: the pieces' sizes."""

    def __init__(self, tokens: Sequence[str]):
        self.tokens = tokens
        self.lengths = [min(MAX_SENTENCE_TOKENS, len(tokens) - i) for i in range(0, len(tokens), MAX_SENTENCE_TOKENS)]
        self.starts, pos = [], 0  # each piece's offset in the text
        for i, tok in enumerate(tokens):
            if i % MAX_SENTENCE_TOKENS == 0:
                self.starts.append(pos)
            pos += len(tok) + 1

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, k: int) -> list[Token]:
        if not 0 <= k < len(self.lengths):
            raise IndexError(k)
        piece, pos = [], self.starts[k]
        for tok in self.tokens[k * MAX_SENTENCE_TOKENS:(k + 1) * MAX_SENTENCE_TOKENS]:
            piece.append(Token(tok, pos, pos + len(tok)))
            pos += len(tok) + 1
        return piece
