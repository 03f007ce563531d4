from __future__ import annotations

import json
from pathlib import Path

import pytest

from saliency_distill.data import (
    Example,
    TaskConfig,
    get_task,
    load_prepared,
    make_splits,
    parse_llm_completion,
    prepare,
    render,
)
from saliency_distill.data.config import FieldMap
from saliency_distill.data.quartz import parse_quartz_row
from saliency_distill.data.sarcasm import parse_sarcasm_row
from saliency_distill.data.socialiqa import parse_socialiqa_row
from saliency_distill.data.tweets import parse_tweets
from saliency_distill.errors import ConfigError, DataError


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


CQA_ROWS = [
    {"id": f"q{i}", "question": f"Where do you keep item {i}?", "choices": ["cupboard", "table", "river", "car", "sky"],
     "answer": ["cupboard", "table"][i % 2], "abstractive_explanation": "plates go in cupboards",
     "extractive_explanation": "keep item"}
    for i in range(12)
]
CQA_COMPLETION = (
    "The answer must be a place to keep things. Of the above choices, only cupboard is such a place. "
    "So the answer is (a) cupboard.\n\nQ: What is this?\nAnswer Choices:\n(a) x\n(b) y\nA: So the answer is (b) y."
)


@pytest.fixture
def cqa_dir(tmp_path) -> Path:
    folder = tmp_path / "cqa"
    write_jsonl(folder / "cqa_train.json", CQA_ROWS[:10])
    write_jsonl(folder / "cqa_test.json", CQA_ROWS[10:])
    (folder / "llm").mkdir()
    # Two files of B=5 rows each: row order across files must be preserved.
    comps = [CQA_COMPLETION.replace("cupboard", f"cupboard{i}") for i in range(10)]
    (folder / "llm" / "train_CoT_0.json").write_text(json.dumps(comps[:5]))
    (folder / "llm" / "train_CoT_1.json").write_text(json.dumps(comps[5:]))
    return folder


@pytest.mark.parametrize(
    "text, rationale, label",
    [
        (CQA_COMPLETION, "The answer must be a place to keep things. Of the above choices, only cupboard is such a place.", "cupboard"),
        ("Luke scored 84 points after 2 rounds. 84 / 2 = 42. The answer is (84 / 2).\n\nQ: There are 120 students.",
         "Luke scored 84 points after 2 rounds. 84 / 2 = 42.", "(84 / 2)"),
        ("The premise mentions a senator. So the answer is entailment.\n\nPremise: Almost Sunrise is a film.",
         "The premise mentions a senator.", "entailment"),
        ("The to go packages are not necessarily from lunch.\nAnswer: neutral\n\nPremise: Two women.\nHypothesis: x",
         "The to go packages are not necessarily from lunch.", "neutral"),
        ("A completion cut off before its answer", "A completion cut off before its answer", None),
    ],
)
def test_parse_llm_completion(text, rationale, label):
    assert parse_llm_completion(text) == (rationale, label)


def test_cqa_reader_aligns_llm_rationales(cqa_dir):
    cfg = TaskConfig(name="cqa", path=str(cqa_dir))
    source = get_task("cqa").load_source(cfg)
    assert [len(source["train"]), len(source["test"])] == [10, 2]
    ex = source["train"][7]
    assert ex.id == "q7" and ex.label == "table"
    assert ex.llm_label == "cupboard7"  # file 1, item 2 = row 7
    assert ex.llm_rationale.endswith("only cupboard7 is such a place.")
    assert ex.human_rationale == "keep item"
    assert source["test"][0].llm_rationale is None  # no test_CoT files


def test_svamp_reader_values(tmp_path):
    folder = tmp_path / "svamp"
    write_jsonl(folder / "svamp_train.json", [{"input": "Luke scored 84 points in 2 rounds.\nPoints per round?", "label": "( 84.0 / 2.0 )"}] * 3)
    write_jsonl(folder / "svamp_test.json", [{"input": "Dan had 4 and has 3 left.\nHow much did he spend?", "label": "( 4.0 - 3.0 )"}])
    source = get_task("svamp").load_source(TaskConfig(name="svamp", path=str(folder)))
    assert source["train"][2].id == "svamp-train-2"
    assert source["train"][0].meta["answer"] == 42.0
    assert source["test"][0].label == "( 4.0 - 3.0 )" and source["test"][0].meta["answer"] == 1.0
    assert source["test"][0].choices is None


def test_svamp_rejects_bad_equation(tmp_path):
    folder = tmp_path / "svamp"
    write_jsonl(folder / "svamp_train.json", [{"input": "x", "label": "( 1.0 + 2.0 )"}, {"input": "y", "label": "os.system(1)"}])
    with pytest.raises(DataError, match=r"svamp_train\.json:2: label is not an arithmetic equation"):
        get_task("svamp").load_source(TaskConfig(name="svamp", path=str(folder)))


def test_nli_reader_maps_labels(tmp_path):
    folder = tmp_path / "esnli"
    rows = [{"premise": "Two women hug.", "hypothesis": "Women embrace.", "label": i % 3, "explanation_1": f"why {i}"} for i in range(6)]
    write_jsonl(folder / "esnli_valid.json", rows)
    source = get_task("esnli").load_source(TaskConfig(name="esnli", path=str(folder)))
    labels = [ex.label for ex in source["valid"]]
    assert labels == ["entailment", "neutral", "contradiction"] * 2
    assert source["valid"][4].human_rationale == "why 4"
    assert source["valid"][0].choices == ("entailment", "neutral", "contradiction")


def test_quartz_row():
    row = {"input": [{"role": "system", "content": "answer with a letter"},
                     {"role": "user", "content": "Eric adds more resistors. The resistance\n\n A: increases\n B: decreases"}],
           "ideal": "B"}
    ex = parse_quartz_row("samples.jsonl:1", 0, row)
    assert ex.fields == {"question": "Eric adds more resistors. The resistance"}
    assert ex.choices == ("increases", "decreases") and ex.label == "decreases"
    with pytest.raises(DataError, match="samples.jsonl:1: label 'C' is not among"):
        parse_quartz_row("samples.jsonl:1", 0, {**row, "ideal": "C"})


def test_socialiqa_row():
    row = {"input": [{"role": "user", "content": "Robin took Taylor's laptop in for repair. What will happen to "
                      "Taylor? A: pay the bill; B: useless; C: supported."}], "ideal": "A"}
    ex = parse_socialiqa_row("test.jsonl:1", 0, row)
    assert ex.fields == {"question": "Robin took Taylor's laptop in for repair. What will happen to Taylor?"}
    assert ex.choices == ("pay the bill", "useless", "supported") and ex.label == "pay the bill"
    with pytest.raises(DataError, match="test.jsonl:1: label 'D' is not one of"):
        parse_socialiqa_row("test.jsonl:1", 0, {**row, "ideal": "D"})
    no_options = {"input": [{"role": "user", "content": "What will happen?"}], "ideal": "A"}
    with pytest.raises(DataError, match="test.jsonl:1: cannot find the options"):
        parse_socialiqa_row("test.jsonl:1", 0, no_options)


def test_sarcasm_rows_and_the_task_from_a_local_copy(tmp_path):
    system = {"role": "system", "content": "Respond with only a 1 or 0"}
    rows = [{"input": [system, {"role": "user", "content": f"area man number {i} unveils plan"}], "ideal": str(i % 2)}
            for i in range(40)]
    ex = parse_sarcasm_row("samples.jsonl:1", 0, rows[1])
    assert ex.fields == {"headline": "area man number 1 unveils plan"} and ex.label == "sarcastic"
    assert ex.choices == ("sarcastic", "sincere") and parse_sarcasm_row("s:1", 0, rows[0]).label == "sincere"
    with pytest.raises(DataError, match="samples.jsonl:1: label '2' is not 1"):
        parse_sarcasm_row("samples.jsonl:1", 0, {**rows[0], "ideal": "2"})
    with pytest.raises(DataError, match="samples.jsonl:1: no headline"):
        parse_sarcasm_row("samples.jsonl:1", 0, {"input": [system], "ideal": "1"})
    data = tmp_path / "samples.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = TaskConfig(name="sarcasm", path=str(data))
    splits = make_splits(get_task("sarcasm").load_source(cfg), cfg)
    assert sum(len(v) for v in splits.values()) == 40 and all(len(v) for v in splits.values())
    prompt = get_task("sarcasm").render(splits["train"][0], cfg)
    assert prompt.text.startswith("Headline: area man number") and prompt.content() == [
        splits["train"][0].fields["headline"]]


def test_tweets_keep_agreed_single_label_texts_once_and_the_task_reads_a_local_copy(tmp_path):
    rows = [b"sentiment,confidence,text",
            b"negative,1.0,delayed again @airline",        # kept
            b"negative,0.5,delayed again @airline",        # a copy: kept once
            b"positive,0.99,love the new seats",           # kept
            b"neutral,0.7,flight 12 lands at 5",           # annotators unsure: dropped
            b"neutral,,no confidence given",               # no confidence: dropped
            b"positive,1.0,great service",                 # another copy says negative: dropped
            b"negative,1.0,great service",
            b"neutral,1.0,caf\xe9 at gate 4"]              # not UTF-8: dropped
    examples = parse_tweets("c.csv", b"\n".join(rows))
    assert [(e.fields["text"], e.label) for e in examples] == [("delayed again @airline", "negative"),
                                                               ("love the new seats", "positive")]
    assert [e.id for e in examples] == ["tweets-0", "tweets-1"] and examples[0].choices == ("negative", "neutral",
                                                                                            "positive")
    with pytest.raises(DataError, match="c.csv:2: label 'angry' is not one of"):
        parse_tweets("c.csv", b"sentiment,confidence,text\nangry,1.0,grr")
    with pytest.raises(DataError, match="c.csv:2: confidence 'high' is not a number"):
        parse_tweets("c.csv", b"sentiment,confidence,text\nneutral,high,ok")
    with pytest.raises(DataError, match="c.csv: expected the header"):
        parse_tweets("c.csv", b"label,text\nneutral,ok")
    data = tmp_path / "tweets.csv"
    data.write_bytes(b"\n".join([rows[0], *(f"{['negative', 'neutral', 'positive'][i % 3]},1.0,tweet number {i}"
                                           .encode() for i in range(30))]))
    cfg = TaskConfig(name="tweets", path=str(data))
    splits = make_splits(get_task("tweets").load_source(cfg), cfg)
    assert sum(len(v) for v in splits.values()) == 30 and all(len(v) for v in splits.values())
    prompt = get_task("tweets").render(splits["train"][0], cfg)
    assert prompt.text.startswith("Tweet: tweet number") and prompt.content() == [splits["train"][0].fields["text"]]


def test_snli_leaves_out_pairs_without_a_gold_label_and_reads_a_local_folder(tmp_path):
    import json

    def row(i: int, label: str) -> str:
        return json.dumps({"gold_label": label, "pairID": f"p{i}", "sentence1": f"A dog runs {i}.",
                           "sentence2": f"An animal moves {i}.", "annotator_labels": [label]})

    labels = ["entailment", "neutral", "contradiction"]
    (tmp_path / "train.jsonl").write_text("\n".join(row(i, labels[i % 3]) for i in range(40)) + "\n" + row(99, "-"))
    (tmp_path / "test.jsonl").write_text("\n".join([row(100, "neutral"), row(101, "-"), row(102, "entailment")]))
    cfg = TaskConfig(name="snli", path=str(tmp_path))
    source = get_task("snli").load_source(cfg)
    assert [len(source["train"]), len(source["test"])] == [40, 2]
    assert [(e.id, e.label) for e in source["test"]] == [("p100", "neutral"), ("p102", "entailment")]
    assert source["test"][0].choices == ("entailment", "neutral", "contradiction")
    splits = make_splits(source, cfg)
    assert len(splits["train"]) + len(splits["validation"]) == 40 and len(splits["validation"]) > 0
    prompt = get_task("snli").render(splits["test"][0], cfg)
    assert prompt.content()[:2] == ["A dog runs 100.", "An animal moves 100."]
    assert prompt.text == get_task("esnli").render(splits["test"][0], cfg).text  # e-SNLI's prompt
    (tmp_path / "test.jsonl").write_text(row(1, "maybe"))
    with pytest.raises(DataError, match=r"test.jsonl:1: gold_label 'maybe' is not one of"):
        get_task("snli").load_source(cfg)


def test_render_content_spans():
    ex = Example(id="1", fields={"question": "Where is it?"}, label="b", choices=("a", "b"))
    p = render("Question: {question}\nAnswer Choices:\n{choices}\nAnswer:", ex)
    assert p.text == "Question: Where is it?\nAnswer Choices:\n(a) a\n(b) b\nAnswer:"
    assert p.content_spans == ((10, 22), (43, 44), (49, 50))
    assert p.content() == ["Where is it?", "a", "b"]
    assert p.span_fields == ("question", "choice:0", "choice:1")


def test_render_nli_template_has_no_choice_content():
    ex = Example(id="1", fields={"premise": "A dog runs.", "hypothesis": "An animal moves."}, label="entailment",
                 choices=("entailment", "neutral", "contradiction"))
    cfg = TaskConfig(name="esnli", path="unused")
    p = get_task("esnli").render(ex, cfg)
    assert p.content() == ["A dog runs.", "An animal moves."]
    assert "entailment" in p.text  # in the template, outside every content span
    assert all("entailment" not in c for c in p.content())


def test_render_unknown_field():
    ex = Example(id="e1", fields={"question": "q"}, label="x")
    with pytest.raises(DataError, match=r"example e1: template field '\{premise\}'"):
        render("Premise: {premise}", ex)


# ---- the user's own files -------------------------------------------------------------------

FILE_FIELDS = {"content": ["question"], "choices": "options", "label": "answer", "rationale": "why"}


def _file_cfg(path, **fields) -> TaskConfig:
    return TaskConfig(name="file", path=str(path), fields=FieldMap(**{**FILE_FIELDS, **fields}))


def _rows(n=10):
    return [{"question": f"Which is bigger, {i} or {i + 1}?", "options": [str(i), str(i + 1)], "answer": str(i + 1), "why": "bigger"} for i in range(n)]


def test_file_task_jsonl_csv_parquet_agree(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _rows()
    write_jsonl(tmp_path / "d.jsonl", rows)
    with open(tmp_path / "d.csv", "w") as f:
        f.write("question,options,answer,why\n")
        for r in rows:
            f.write(f"\"{r['question']}\",{'|'.join(r['options'])},{r['answer']},{r['why']}\n")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    results = []
    for ext in ("jsonl", "csv", "parquet"):
        source = get_task("file").load_source(_file_cfg(tmp_path / f"d.{ext}"))
        results.append([(e.fields["question"], e.choices, e.label, e.human_rationale) for e in source["all"]])
    assert results[0] == results[1] == results[2]
    assert results[0][3] == ("Which is bigger, 3 or 4?", ("3", "4"), "4", "bigger")


def test_file_task_label_index_and_closed_label_set(tmp_path):
    write_jsonl(tmp_path / "nli.jsonl", [{"p": "A dog runs.", "h": "An animal moves.", "y": 0}, {"p": "x", "h": "y", "y": 2}])
    cfg = TaskConfig(name="file", path=str(tmp_path / "nli.jsonl"),
                     fields=FieldMap(content=["p", "h"], label="y", labels=["entailment", "neutral", "contradiction"]))
    exs = get_task("file").load_source(cfg)["all"]
    assert [e.label for e in exs] == ["entailment", "contradiction"]
    assert get_task("file").answer_type(cfg) == "choice"
    assert get_task("file").template_for(cfg) == "P: {p}\nH: {h}\nAnswer:"


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"question": "a?", "options": ["x", "y"], "answer": "x"}\n{"question": "b?", "options": ["x", "y"], "answer": "x"\n',
         r"d\.jsonl:2: invalid JSON"),
        ('{"question": "a?", "options": ["x", "y"], "answer": "x"}\n{"question": "b?", "options": ["x", "y"]}\n',
         r"d\.jsonl:2: missing field 'answer'"),
        ('{"question": "a?", "options": ["x", "y"], "answer": "z"}\n',
         r"d\.jsonl:1: label 'z' is not among the choices \['x', 'y'\]"),
        ('\n{"question": "  ", "options": ["x", "y"], "answer": "x"}\n',
         r"d\.jsonl:2: content field 'question' is empty"),
        ('[1, 2]\n', r"d\.jsonl:1: expected a JSON object"),
    ],
)
def test_file_task_bad_input(tmp_path, content, message):
    (tmp_path / "d.jsonl").write_text(content)
    with pytest.raises(DataError, match=message) as info:
        get_task("file").load_source(_file_cfg(tmp_path / "d.jsonl"))
    assert "\n" not in str(info.value)


def test_file_task_missing_file_and_bad_extension(tmp_path):
    with pytest.raises(DataError, match=r"nope\.jsonl: data file not found"):
        get_task("file").load_source(_file_cfg(tmp_path / "nope.jsonl"))
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        get_task("file").load_source(_file_cfg(tmp_path / "d.txt"))


def test_hf_task_through_local_folder(tmp_path):
    folder = tmp_path / "my_dataset"
    write_jsonl(folder / "train.jsonl", _rows(8))
    write_jsonl(folder / "test.jsonl", _rows(3))
    cfg = TaskConfig(name="hf", path=str(folder), fields=FieldMap(**FILE_FIELDS))
    source = get_task("hf").load_source(cfg)
    assert sorted(source) == ["test", "train"]
    assert len(source["train"]) == 8 and source["test"][2].label == "3"
    with pytest.raises(DataError, match="cannot load dataset"):
        get_task("hf").load_source(TaskConfig(name="hf", path=str(tmp_path / "missing")))


def test_unknown_task():
    with pytest.raises(ConfigError, match="unknown task 'cqa2' \\(choose from: cqa, svamp"):
        get_task("cqa2")


# ---- splits and prepare ----------------------------------------------------------------------

def _examples(n):
    return [Example(id=str(i), fields={"q": f"q{i}"}, label="a", choices=("a", "b")) for i in range(n)]


def test_make_splits_pool_is_seeded_disjoint_and_complete():
    cfg = TaskConfig(name="file", seed=1, test_fraction=0.2, validation_fraction=0.1)
    a = make_splits({"all": _examples(100)}, cfg)
    b = make_splits({"all": _examples(100)}, cfg)
    c = make_splits({"all": _examples(100)}, TaskConfig(name="file", seed=2))
    sizes = {k: len(v) for k, v in a.items()}
    assert sizes == {"train": 72, "validation": 8, "test": 20}
    ids = [e.id for split in a.values() for e in split]
    assert sorted(ids, key=int) == [str(i) for i in range(100)]
    assert [e.id for e in a["test"]] == [e.id for e in b["test"]]
    assert [e.id for e in a["test"]] != [e.id for e in c["test"]]
    assert [int(e.id) for e in a["test"]] == sorted(int(e.id) for e in a["test"])  # source order kept


def test_make_splits_keeps_given_test_and_subsamples():
    cfg = TaskConfig(name="file", max_train=10, max_test=5)
    out = make_splits({"train": _examples(50), "test": _examples(60)[50:]}, cfg)
    assert len(out["train"]) == 10 and len(out["validation"]) == 5
    test_ids = [int(e.id) for e in out["test"]]
    assert len(test_ids) == 5 and test_ids == sorted(test_ids) and set(test_ids) <= set(range(50, 60))
    assert not {e.id for e in out["train"]} & {e.id for e in out["validation"]}


def test_make_splits_rejects_duplicate_ids():
    with pytest.raises(DataError, match="example id '0' occurs in train and test"):
        make_splits({"train": _examples(10), "test": _examples(5)}, TaskConfig(name="file"))


def test_prepare_writes_reuses_and_refuses_other_config(tmp_path, cqa_dir):
    run = tmp_path / "run"
    cfg = TaskConfig(name="cqa", path=str(cqa_dir))
    splits = prepare(cfg, run)
    assert {k: len(v) for k, v in splits.items()} == {"train": 9, "validation": 1, "test": 2}
    manifest = json.loads((run / "data" / "manifest.json").read_text())
    assert manifest["sizes"] == {"train": 9, "validation": 1, "test": 2}
    assert manifest["with_llm_rationale"]["test"] == 0
    again = load_prepared(run, "train")
    assert [e.to_dict() for e in again] == [e.to_dict() for e in splits["train"]]
    with pytest.raises(ConfigError, match="prepared data made under another config"):
        prepare(TaskConfig(name="cqa", path=str(cqa_dir), seed=5), run)
    prepare(TaskConfig(name="cqa", path=str(cqa_dir), seed=5), run, overwrite=True)


def test_prepare_bad_data_leaves_nothing(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"question": "a?", "options": ["x", "y"], "answer": "x"}\nnot json\n')
    run = tmp_path / "run"
    with pytest.raises(DataError, match=r"d\.jsonl:2"):
        prepare(_file_cfg(tmp_path / "d.jsonl"), run)
    assert not (run / "data").exists() or not any((run / "data").iterdir())


def test_written_files_get_the_umask_mode_not_mkstemps(tmp_path):
    import os
    import stat

    from saliency_distill.io import temp_dir, write_json

    write_json(tmp_path / "out.json", {"a": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == 0o666 & ~mask
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    # Folders renamed into place (saved models, converted weights) likewise.
    folder = temp_dir(tmp_path, ".model.")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~mask
