"""The invented-world corpus: deterministic, topics TF-IDF can tell apart, and regular relations in the text."""

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from simulator.data.corpus import generate_corpus
from simulator.data.world import CAPITALS, GENDER, RELATIONS, TOPIC_NAMES, TOPICS, world_corpus, world_documents
from simulator.presets import PresetError, load_preset, override
from simulator.text.tfidf import fit_tfidf, split_documents, words

ROOT = Path(__file__).resolve().parent.parent


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.fixture(scope="module")
def docs():
    return world_documents()


def test_the_default_corpus_is_unchanged_and_the_world_corpus_is_deterministic():
    # the default corpus feeds every existing lesson: the world generator is a new mode, not a change of it
    assert sha(generate_corpus()) == "5a7bcb3bd64eac5adfc6edf51a6d4d2ddcea4583db0bc93b83c69779f64cdfc5"
    text = world_corpus()
    assert 300_000 <= len(text) < 301_000 and sha(text) == sha("\n\n".join(d.text for d in world_documents()) + "\n")
    code = "import hashlib; from simulator.data.world import world_corpus; " \
           "print(hashlib.sha256(world_corpus().encode()).hexdigest())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=str(ROOT), PYTHONHASHSEED="7"))
    assert out.stdout.strip() == sha(text)
    assert world_documents(20_000, seed=1) != world_documents(20_000, seed=0)


def test_documents_are_paragraphs_with_topics(docs):
    text = world_corpus()
    assert [d.text for d in docs] == split_documents(text)
    assert {d.topic for d in docs} == set(TOPIC_NAMES)
    counts = np.array([sum(d.topic == t for d in docs) for t in TOPIC_NAMES])
    assert counts.min() > 0.6 * counts.mean()  # each topic has its share


def test_tfidf_tells_topics_apart(docs):
    t = fit_tfidf([d.text for d in docs])
    sim = t.document_similarity()
    topic = np.array([TOPIC_NAMES.index(d.topic) for d in docs])
    same = topic[:, None] == topic[None, :]
    off = ~np.eye(len(docs), dtype=bool)
    assert sim[same & off].mean() > 2 * sim[~same].mean()
    # a document's top keywords are words of its own topic (or of the world's shared words), never another topic's
    own = {tp.name: {w for n in tp.nouns for w in n} | {w for v in tp.verbs for w in v}
           | {w for r in tp.roles for w in r} | {w for p in tp.places for w in words(p)[1:]} | set(tp.adjectives)
           for tp in TOPICS}
    for i, d in enumerate(docs[:200]):
        others = set().union(*(own[n] for n in TOPIC_NAMES if n != d.topic)) - own[d.topic]
        assert not {w for w, _ in t.keywords(i, 3)} & others


def test_gender_pairs_take_their_own_pronouns():
    text = world_corpus()
    for male, female in GENDER:
        for role, pronoun, possessive in ((male, "he", "his"), (female, "she", "her")):
            after = re.findall(rf"\bthe {role} \w+ [\w ]+? (?:and (\w+) rests|with (\w+) )", text)
            assert len(after) > 20, role
            assert all(a in ("", pronoun) and b in ("", possessive) for a, b in after), role


def test_plural_subjects_take_plural_verbs():
    text = world_corpus()
    checked = 0
    for topic in TOPICS:
        singular_verbs = "|".join(v[0] for v in topic.verbs)
        plural_verbs = "|".join(v[1] for v in topic.verbs)
        for noun in topic.nouns:
            if noun.singular == noun.plural:
                continue
            for det in ("two", "many", "some"):
                hits = re.findall(rf"\b{det} (?:\w+ )?{noun.plural} ({singular_verbs}|{plural_verbs})\b", text)
                assert all(h in plural_verbs.split("|") for h in hits)
                checked += len(hits)
            hits = re.findall(rf"\b(?:one|that) (?:\w+ )?{noun.singular} ({singular_verbs}|{plural_verbs})\b", text)
            assert all(h in singular_verbs.split("|") for h in hits)
            checked += len(hits)
            # "there is one goat", "there are many goats", "the goat has", "the goats have": never crossed
            assert len(re.findall(rf"\bthere is (?:one|a single) {noun.singular}\b", text)) > 3
            assert len(re.findall(rf"\bthere are (?:many|two|three) {noun.plural}\b", text)) > 3
            assert not re.search(rf"\bthere is (?:one|a single) {noun.plural}\b|\bthere are (?:many|two|three) "
                                 rf"{noun.singular}\b|\bthe {noun.singular} have\b|\bthe {noun.plural} has\b", text)
    assert checked > 500
    assert set(RELATIONS["plural"]) >= {("goat", "goats"), ("loaf", "loaves")}


def test_every_capital_goes_with_its_country_only():
    text = world_corpus()
    capital_of = dict(CAPITALS)
    stated = re.findall(r"\b(\w+) is the capital of (\w+)", text) + \
        [(c, n) for n, c in re.findall(r"the capital of (\w+) is (\w+)", text)]
    assert {n for _, n in stated} == set(capital_of)
    assert all(capital_of[n] == c for c, n in stated)
    for rel, pairs in RELATIONS.items():  # every word of every relation occurs often enough to be learned
        for a, b in pairs:
            for w in (a, b):
                assert len(re.findall(rf"\b{w}\b", text)) >= 30, (rel, w)


def test_data_kind_world_loads_and_refuses_a_path():
    cfg = override(load_preset("tiny-gpt"), **{"data.kind": "world"})
    from simulator.data import load_dataset
    ds = load_dataset(cfg.data)
    assert ds.tokenizer.decode(np.concatenate([ds.train_ids, ds.val_ids])) == world_corpus()
    with pytest.raises(PresetError, match="--path: is set but data.kind is world"):
        override(cfg, **{"data.path": "x.txt"})


def analogy_accuracy(vectors: np.ndarray, index: dict[str, int], pairs) -> float:
    """Share of a:b :: c:? over ordered pairs of pairs whose nearest word to b - a + c (a, b, c left out) is d."""
    e = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    hits = total = 0
    for a, b in pairs:
        for c, d in pairs:
            if a == c:
                continue
            s = e @ (e[index[b]] - e[index[a]] + e[index[c]])
            s[[index[a], index[b], index[c]]] = -np.inf
            hits += int(np.argmax(s)) == index[d]
            total += 1
    return hits / total


def test_a_count_based_embedding_recovers_the_relations():
    # PPMI of a +-2 word window, factorised by SVD (Levy & Goldberg's count-based word vectors): no training,
    # so this checks the corpus, not a learner. Chance is about 1 / (number of words) for each relation.
    toks = words(world_corpus())
    vocab = sorted(set(toks))
    index = {w: i for i, w in enumerate(vocab)}
    ids = np.array([index[w] for w in toks])
    counts = np.zeros((len(vocab), len(vocab)))
    for d in (1, 2):
        np.add.at(counts, (ids[:-d], ids[d:]), 1)
        np.add.at(counts, (ids[d:], ids[:-d]), 1)
    p = counts / counts.sum()
    with np.errstate(divide="ignore"):
        ppmi = np.maximum(np.log(p / (p.sum(1, keepdims=True) * p.sum(0, keepdims=True))), 0.0)
    u, s, _ = np.linalg.svd(ppmi)
    vectors = u[:, :100] * np.sqrt(s[:100])
    acc = {rel: analogy_accuracy(vectors, index, pairs) for rel, pairs in RELATIONS.items()}
    assert acc["plural"] > 0.8 and acc["capital"] > 0.9 and acc["gender"] > 0.3, acc
