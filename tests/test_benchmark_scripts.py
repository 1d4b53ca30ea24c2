"""The analysis scripts under benchmarks/ whose figures README.md and docs/ quote."""

import importlib.util
from pathlib import Path

import pytest
import torch

from nerbilstm.data.readers import Sentence

from servers import tiny_tagger
from synthetic import synthetic_sentences

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_label_consistency_counts_near_pairs_against_chance():
    consistency = load_script("label_consistency").consistency
    o = Sentence(["x"], ["O"])
    corpus = [Sentence(["Acme", "said"], ["B-org", "O"]), Sentence(["Acme"], ["B-org"])] + [o] * 8 + [
        Sentence(["in", "Acme"], ["O", "B-geo"]), Sentence(["Acme"], ["B-geo"]),
        Sentence(["Bob"], ["B-per"]), Sentence(["Bob"], ["B-per"])]  # one tag only: not ambiguous
    rows = consistency(corpus, top=5, window=3, min_share=0.1)
    assert [r["word"] for r in rows] == ["Acme"]
    acme = rows[0]
    assert acme["n"] == 4 and acme["tags"] == {"B-org": 0.5, "B-geo": 0.5}
    # occurrences in sentences 0, 1, 10, 11: pairs (0,1) and (10,11) are near and agree; (1,10) is far
    assert acme["near_pairs"] == 2 and acme["near_agreement"] == 1.0 and acme["chance_agreement"] == 0.5
    assert consistency(corpus, top=5, window=3, min_share=0.6) == []


def test_duplicate_agreement_scores_later_copies_against_the_first():
    duplicate_agreement = load_script("label_consistency").duplicate_agreement
    corpus = [
        Sentence(["UN", "met", "Bob"], ["B-org", "O", "B-per"]),
        Sentence(["x"], ["O"]), Sentence(["x"], ["O"]),  # repeated, no entity: not a pair
        Sentence(["UN", "met", "Bob"], ["B-geo", "O", "B-per"]),  # one of two entities agrees
        Sentence(["UN", "met", "Bob"], ["B-org", "O", "B-per"]),  # both agree
        Sentence(["once"], ["B-tim"]),
        Sentence(["only", "once", "here"], ["O", "O", "O"]),
    ]
    result = duplicate_agreement(corpus)
    assert result["repeated_texts"] == 2 and result["sentences_in_them"] == 5
    # repeated texts of 3 and 1 tokens; the corpus's 7 sentences have 1, 1, 1, 3, 3, 3, 3
    assert result["median_tokens"] == 2 and result["corpus_median_tokens"] == 3
    assert result["pairs_with_entities"] == 2 and result["identical_pairs"] == 1
    # first copy as gold (4 entities), later copies as predictions: 3 of 4 correct
    assert result["entities"] == 4 and result["entity_f1"] == 0.75
    assert result["per_type_f1"] == {"org": 0.667, "per": 1.0}
    assert duplicate_agreement([Sentence(["a"], ["O"])])["entity_f1"] is None


@pytest.fixture(scope="module")
def two_taggers(tmp_path_factory):
    first = tiny_tagger(tmp_path_factory.mktemp("a"), seed=1)
    second = tiny_tagger(tmp_path_factory.mktemp("b"), seed=2)
    assert not torch.equal(first.model.crf.transitions, second.model.crf.transitions)
    return first, second


def test_ensemble_of_one_model_or_its_copies_tags_as_the_model(two_taggers):
    ensemble_tags = load_script("ensemble").ensemble_tags
    tagger = two_taggers[0]
    sentences = [s.tokens for s in synthetic_sentences(60, seed=7)]
    expected = tagger.tags(sentences)
    assert ensemble_tags([tagger], sentences, batch_size=16) == expected
    assert ensemble_tags([tagger, tagger, tagger], sentences, batch_size=16) == expected


def test_ensemble_leaves_the_models_unchanged(two_taggers):
    ensemble_tags = load_script("ensemble").ensemble_tags
    first, second = two_taggers
    before = {k: v.clone() for k, v in first.model.state_dict().items()}
    sentences = [s.tokens for s in synthetic_sentences(20, seed=3)]
    tags = ensemble_tags([first, second], sentences)
    assert len(tags) == 20 and all(len(t) == len(s) for t, s in zip(tags, sentences))
    after = first.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_peers_docbins_hold_our_tokens_and_tags(tmp_path):
    """The spaCy side trains and is scored on exactly our reader's sentences: DocBin round trip."""
    spacy = pytest.importorskip("spacy")
    from spacy.tokens import DocBin

    peers = load_script("peers")
    sentences = synthetic_sentences(40, seed=5) + [Sentence(["Bob", "Ann", "left"], ["B-per", "B-per", "O"])]

    class Split:
        train, dev, test = sentences[:30], sentences[30:35], sentences[35:]

    paths = peers.write_docbins(Split, tmp_path)
    docs = list(DocBin().from_disk(paths["train"]).get_docs(spacy.blank("en").vocab))
    docs += list(DocBin().from_disk(paths["test"]).get_docs(spacy.blank("en").vocab))
    expected = Split.train + Split.test
    assert [[t.text for t in d] for d in docs] == [list(s.tokens) for s in expected]
    assert [peers.spacy_tags(d) for d in docs] == [list(s.tags) for s in expected]


def test_peers_scores_agree_with_seqeval_and_table_lists_every_system():
    pytest.importorskip("seqeval")
    peers = load_script("peers")
    gold = [s.tags for s in synthetic_sentences(50, seed=1)]
    pred = [s.tags for s in synthetic_sentences(50, seed=1)]
    pred[0] = ["O"] * len(pred[0])
    result = peers.scores(gold, pred)
    assert 0 < result["entity_f1"] < 1 and result["entity_f1"] == result["seqeval_entity_f1"]
    speed = {"pretokenized_batch": 1.0, "text_batch": 2.0, "text_one_per_call": 3.0}
    row = {**result, "train": {"wall_seconds": 1.0, "cpu_seconds": 2.0}, "model_bytes": 2e6,
           "glove_package_bytes": 8e7, "sentences_per_second": {"wall": speed, "cpu": speed}}
    report = {"threads": 2, "corpora": {"ncbi": {"test_sentences": 50, "test_tokens": 500,
                                                 "systems": {"ours": row, "spacy-efficiency": row}}}}
    table = peers.markdown(report, "cpu")
    assert table.count("| ours |") == 1 and table.count("| spacy-efficiency |") == 1
    assert "| 2 s |" in table and "cpu time" in table


def test_doc_memory_adds_and_relabels_only_what_it_should():
    with_memory = load_script("doc_memory").with_memory
    tokens = [["VHL", "disease", "is", "rare"], ["wt", "VHL", "protein"], ["VHL", "disease", "again"],
              ["Paris", "and", "Paris"]]
    spans = [[("Disease", 0, 2, 0.95)],  # remembered: "VHL disease"
             [("Disease", 1, 2, 0.4)],  # "VHL" alone, not confident: not remembered
             [],  # "VHL disease" again, unpredicted: gets the entity
             [("geo", 0, 1, 0.99), ("org", 2, 3, 0.6)]]
    got = with_memory(tokens, spans, [0, 1, 2, 3], confident=0.9, relabel=False)
    assert got[0] == spans[0] and got[1] == spans[1]
    assert got[2] == [("Disease", 0, 2, 0.0)]
    assert got[3] == spans[3]  # an exact span with another label is left alone without relabel
    relabelled = with_memory(tokens, spans, [0, 1, 2, 3], confident=0.9, relabel=True)
    assert relabelled[3] == [("geo", 0, 1, 0.99), ("geo", 2, 3, 0.6)]
    assert with_memory(tokens, spans, [1, 2], confident=0.9, relabel=False)[2] == []  # another document
