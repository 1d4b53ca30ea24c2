"""The spaCy component (extra ``spacy``): the same tags as ``Tagger.tag_tokens`` on the same
tokens, ``nlp.pipe`` equal to one doc at a time, sentences, refusal to overwrite entities, and
``nlp.to_disk`` / ``spacy.load`` with the model's files stored in the pipeline."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

spacy = pytest.importorskip("spacy", reason="spaCy is not installed (pip install -e '.[spacy]')")

from spacy.tokens import Doc  # noqa: E402

from nerbilstm import spacy_component  # noqa: E402  (registers the "nerbilstm" factory)
from nerbilstm.errors import ModelFileError  # noqa: E402
from nerbilstm.predict import DEFAULT_MODEL_DIR, Tagger  # noqa: E402
from nerbilstm.tags import entity_spans  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = [
    "Prime Minister Gordon Brown met U.S. President Barack Obama in London on Tuesday .".split(),
    "The United Nations says 30,000 people fled Darfur last month .".split(),
    "Angela Merkel visited Paris and Berlin .".split(),
    "nothing to see here".split(),
    ["Kenya"],
    "Officials in Baghdad said the Iraqi army attacked al-Qaida fighters near Mosul on Friday .".split(),
]
TEXTS = [
    "Angela Merkel visited Paris. Then she flew to Washington to meet Barack Obama.",
    "The United Nations says 30,000 people fled Darfur.",
    "",
    "Officials in Baghdad said the Iraqi army attacked fighters near Mosul on Friday.\n\nNothing else happened.",
    "Toyota and Microsoft opened offices in Tokyo, Seoul and New Delhi in March 2009.",
]


@pytest.fixture(scope="module")
def tagger(one_thread) -> Tagger:
    return Tagger.load()


@pytest.fixture(scope="module")
def nlp(tagger):
    nlp = spacy.blank("en")
    nlp.add_pipe("nerbilstm")
    nlp.get_pipe("nerbilstm")._tagger = tagger  # the same loaded model: spares a second load
    return nlp


@pytest.fixture(scope="module")
def nlp_sents(tagger):
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("nerbilstm")
    nlp.get_pipe("nerbilstm")._tagger = tagger
    return nlp


def iob2(doc) -> list[str]:
    """The doc's token entity annotation as IOB2 tags (spaCy's own per-token view of doc.ents)."""
    return [t.ent_iob_ + "-" + t.ent_type_ if t.ent_iob_ in ("B", "I") else "O" for t in doc]


def ents(doc) -> list[tuple]:
    return [(e.start, e.end, e.label_, e._.nerbilstm_score) for e in doc.ents]


def assert_same_as_tag_tokens(nlp, tagger, token_lists):
    docs = list(nlp.pipe([Doc(nlp.vocab, words=tokens) for tokens in token_lists], batch_size=64))
    want_tags = tagger.tags(token_lists)
    want_docs = tagger.tag_tokens(token_lists)
    for tokens, doc, tags, want in zip(token_lists, docs, want_tags, want_docs):
        assert [t.text for t in doc] == list(tokens)
        assert iob2(doc) == tags
        assert [(e.label_, e.start, e.end) for e in doc.ents] == entity_spans(tags)
        assert [e.text for e in doc.ents] == [e["text"] for e in want["entities"]]
        assert [round(e._.nerbilstm_score, 4) for e in doc.ents] == pytest.approx(
            [e["score"] for e in want["entities"]], abs=2e-4)
        assert doc._.nerbilstm_score == pytest.approx(want["sentences"][0]["score"], abs=1e-3)
    return docs


def test_same_tags_as_tag_tokens(nlp, tagger):
    docs = assert_same_as_tag_tokens(nlp, tagger, SENTENCES)
    assert sum(len(d.ents) for d in docs) >= 8  # the shipped model finds the people and places
    assert {e.label_ for d in docs for e in d.ents} >= {"per", "geo"}
    assert all(0.0 < e._.nerbilstm_score <= 1.0 for d in docs for e in d.ents)


def test_same_tags_on_gmb_test_sentences(nlp, tagger, gmb_path):
    from nerbilstm.data.dataset import split_canonical
    from nerbilstm.data.readers import read_corpus

    test = split_canonical(list(read_corpus(gmb_path)))[2]
    step = max(1, len(test) // 300)
    sample = [s.tokens for s in test[::step][:300]]
    assert len(sample) == 300
    docs = assert_same_as_tag_tokens(nlp, tagger, sample)
    assert sum(len(d.ents) for d in docs) > 300


def test_pipe_equals_one_by_one(nlp_sents):
    one_by_one = [nlp_sents(text) for text in TEXTS]
    for batch_size in (1, 2, 64):
        piped = list(nlp_sents.pipe(TEXTS, batch_size=batch_size))
        for a, b in zip(one_by_one, piped):
            assert [(e.start, e.end, e.label_) for e in a.ents] == [(e.start, e.end, e.label_) for e in b.ents]
            assert [e._.nerbilstm_score for e in b.ents] == pytest.approx([e._.nerbilstm_score for e in a.ents],
                                                                            abs=1e-5)
            assert b._.nerbilstm_sentence_scores == pytest.approx(a._.nerbilstm_sentence_scores, abs=1e-4)
    assert sum(len(d.ents) for d in one_by_one) >= 10


def test_tags_sentence_by_sentence_when_sentences_are_set(nlp_sents, tagger):
    text = TEXTS[0] + " " + TEXTS[4]
    doc = nlp_sents(text)
    sents = list(doc.sents)
    assert len(sents) == 3 and len(doc._.nerbilstm_sentence_scores) == 3
    want = tagger.tags([[t.text for t in s] for s in sents])
    assert iob2(doc) == [tag for tags in want for tag in tags]
    assert doc._.nerbilstm_score == pytest.approx(sum(doc._.nerbilstm_sentence_scores))
    for ent in doc.ents:  # an entity never crosses a sentence boundary
        assert ent.sent.start <= ent.start and ent.end <= ent.sent.end


def test_whitespace_tokens_are_not_shown_to_the_model(nlp, tagger):
    doc = nlp("Angela Merkel visited\n\n  Paris   and Berlin .")
    words = [t.text for t in doc if not t.is_space]
    assert len(words) < len(doc)
    want = tagger.tags([words])[0]
    assert doc._.nerbilstm_score == pytest.approx(tagger.tag_tokens([words])[0]["sentences"][0]["score"], abs=1e-3)
    assert [tag for t, tag in zip(doc, iob2(doc)) if not t.is_space] == want
    assert all(tag == "O" for t, tag in zip(doc, iob2(doc)) if t.is_space)
    assert [e.text for e in doc.ents] == ["Angela Merkel", "Paris", "Berlin"]


def test_refuses_to_overwrite_entities_unless_configured(tagger):
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "ORG", "pattern": "Paris"}])
    nlp.add_pipe("nerbilstm")
    nlp.get_pipe("nerbilstm")._tagger = tagger
    with pytest.raises(spacy_component.EntitiesExistError, match="already has 1 entities.*overwrite"):
        nlp("Angela Merkel visited Paris.")
    with pytest.raises(spacy_component.EntitiesExistError):
        list(nlp.pipe(["Nothing here.", "Angela Merkel visited Paris."]))
    nlp.remove_pipe("nerbilstm")
    nlp.add_pipe("nerbilstm", config={"overwrite": True})
    nlp.get_pipe("nerbilstm")._tagger = tagger
    doc = nlp("Angela Merkel visited Paris.")
    assert [(e.text, e.label_) for e in doc.ents] == [("Angela Merkel", "per"), ("Paris", "geo")]
    # entities found before (none here) are no reason to refuse
    assert nlp.get_pipe("nerbilstm")(nlp.make_doc("Angela Merkel visited Paris.")).ents


def test_save_and_load_keeps_the_model_files_not_a_path(tmp_path, tagger):
    model_dir = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, model_dir)
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("nerbilstm", config={"model": str(model_dir)})
    before = [ents(d) for d in nlp.pipe(TEXTS)]
    nlp.to_disk(tmp_path / "pipeline")
    stored = tmp_path / "pipeline" / "nerbilstm"
    for name in ("config.json", "model.safetensors"):
        assert (stored / name).read_bytes() == (model_dir / name).read_bytes()
    shutil.rmtree(model_dir)  # the pipeline must not need the directory it was made from
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.pipe_names == ["sentencizer", "nerbilstm"]
    after = [ents(d) for d in loaded.pipe(TEXTS)]
    assert after == before and sum(map(len, after)) >= 10
    loaded.to_disk(tmp_path / "again")  # and it saves again from its own folder
    assert (tmp_path / "again" / "nerbilstm" / "model.safetensors").read_bytes() == \
        (stored / "model.safetensors").read_bytes()


def test_missing_model_directory_is_a_model_file_error(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("nerbilstm", config={"model": str(tmp_path / "nowhere")})
    with pytest.raises(ModelFileError, match="nowhere: model directory not found"):
        nlp("Angela Merkel visited Paris.")


def test_factory_is_declared_as_a_spacy_entry_point():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    target = project["entry-points"]["spacy_factories"]["nerbilstm"]
    module, _, name = target.partition(":")
    assert module == spacy_component.__name__ and getattr(spacy_component, name) is spacy_component.make_component
    assert spacy.language.Language.has_factory("nerbilstm")
    assert any(r.startswith("spacy") for r in project["optional-dependencies"]["spacy"])
