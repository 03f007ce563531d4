from __future__ import annotations

import json

import pytest

from saliency_distill.errors import ConfigError, DataError
from saliency_distill.rationale import RationaleConfig, RationaleStore, Word, read_store, select, word_scores


def test_subwords_are_summed_into_their_word():
    text = "Q: unbelievable cats"
    spans = [(3, 20)]
    # "un" "believ" "able" " cats": sub-word pieces of one word, then a token with a leading space.
    offsets = [(0, 0), (0, 1), (1, 2), (3, 5), (5, 11), (11, 15), (15, 20)]
    scores = [9.0, 5.0, 5.0, 0.1, 0.2, 0.3, 0.5]
    words = word_scores(text, spans, offsets, scores)
    assert [(w.text, w.start, w.end) for w in words] == [("unbelievable", 3, 15), ("cats", 16, 20)]
    assert words[0].score == pytest.approx(0.6)
    assert words[1].score == pytest.approx(0.5)  # the space in " cats" is not part of a word


def test_template_words_special_tokens_and_punctuation_never_count():
    text = "Question: Where is it?\nAnswer Choices:\n(a) cupboard\nAnswer:"
    spans = [(10, 22), (43, 51)]
    offsets = [(0, 8), (8, 9), (10, 15), (16, 18), (19, 21), (21, 22), (23, 29), (39, 42), (43, 51), (52, 58)]
    scores = [100.0, 50.0, 1.0, 2.0, 3.0, 40.0, 99.0, 77.0, 4.0, 88.0]
    words = word_scores(text, spans, offsets, scores)
    assert [w.text for w in words] == ["Where", "is", "it", "cupboard"]
    assert [w.score for w in words] == [1.0, 2.0, 3.0, 4.0]


def test_words_split_by_punctuation_and_a_token_spanning_two_words():
    text = "well-known cats,dogs and it's"
    spans = [(0, len(text))]
    # One token covers "cats,dogs" (9 chars, 8 of them in words): split 4/8 and 4/8.
    offsets = [(0, 10), (10, 20), (20, 24), (24, 29)]
    scores = [1.0, 8.0, 0.5, 2.0]
    words = word_scores(text, spans, offsets, scores)
    assert [(w.text, round(w.score, 6)) for w in words] == [
        ("well-known", 1.0), ("cats", 4.0), ("dogs", 4.0), ("and", 0.5), ("it's", 2.0)]


def _w(text, score, start):
    return Word(text, start, start + len(text), score)


def test_select_top_k_in_input_order_without_stopwords():
    words = [_w("The", 9.0, 0), _w("plate", 1.0, 4), _w("goes", -5.0, 10), _w("in", 8.0, 15),
             _w("the", 7.0, 18), _w("cupboard", 3.0, 22), _w("Plate", 2.0, 31)]
    chosen = select(words, RationaleConfig(k=2))
    assert [w.text for w in chosen] == ["goes", "cupboard"]
    chosen = select(words, RationaleConfig(k=2, rank_by="signed"))
    assert [w.text for w in chosen] == ["cupboard", "Plate"]  # unique: "Plate" (2.0) beats "plate" (1.0)
    chosen = select(words, RationaleConfig(k=3, drop_stopwords=False, unique=False))
    assert [w.text for w in chosen] == ["The", "in", "the"]
    chosen = select(words, RationaleConfig(k=0.3))  # ceil(0.3 * 7 content words) = 3
    assert [w.text for w in chosen] == ["goes", "cupboard", "Plate"]


@pytest.mark.parametrize("k", [0, -1, 2.5])
def test_bad_k(k):
    with pytest.raises(ConfigError, match="rationale.k"):
        RationaleConfig(k=k)


def test_store_appends_resumes_and_refuses_other_config(tmp_path):
    path = tmp_path / "rationales" / "train.jsonl"
    store = RationaleStore(path, {"config_hash": "aaa", "method": "saliency"})
    store.append([{"id": "1", "rationale": "x"}, {"id": "2", "rationale": "y"}])
    # A kill mid-write leaves a torn last line: it is dropped and that row redone.
    with open(path, "a") as f:
        f.write('{"id": "3", "ratio')
    again = RationaleStore(path, {"config_hash": "aaa", "method": "saliency"})
    assert "1" in again and "2" in again and "3" not in again and len(again) == 2
    again.append([{"id": "2", "rationale": "dup"}, {"id": "3", "rationale": "z"}])
    header, rows = read_store(path)
    assert header["config_hash"] == "aaa"
    assert [r["id"] for r in rows] == ["1", "2", "3"]
    assert rows[1]["rationale"] == "y"  # never duplicated, never overwritten
    with pytest.raises(ConfigError, match="rationale store made under another config"):
        RationaleStore(path, {"config_hash": "bbb"})
    RationaleStore(path, {"config_hash": "aaa"}, overwrite=True)  # this config's rows are kept
    assert [r["id"] for r in read_store(path)[1]] == ["1", "2", "3"]
    RationaleStore(path, {"config_hash": "bbb"}, overwrite=True)
    assert read_store(path)[1] == []


def test_store_rejects_garbage(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"kind": "header", "config_hash": "a"}\nnot json\n')
    with pytest.raises(DataError, match=r"s\.jsonl:2: not a valid rationale store row"):
        RationaleStore(path, {"config_hash": "a"})
    assert json.loads(path.read_text().splitlines()[0])["config_hash"] == "a"


def test_reselect_gives_the_stored_rationale_at_the_stored_k_and_another_k_from_the_same_scores():
    from saliency_distill.rationale import reselect

    words = [["Two", 0.1, 0, 3], ["women", -0.9, 4, 9], ["are", 0.8, 10, 13], ["embracing", 0.5, 14, 23],
             ["hug", 0.05, 24, 27]]
    rows = [{"id": "a", "words": words}]
    assert reselect(rows, RationaleConfig(k=2)) == {"a": "women embracing"}  # "are" is a stopword
    assert reselect(rows, RationaleConfig(k=3)) == {"a": "Two women embracing"}
    assert reselect(rows, RationaleConfig(k=2, rank_by="signed")) == {"a": "Two embracing"}
