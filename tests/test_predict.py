"""Using a trained student: ``saliency-distill predict`` and ``export`` on a tiny run folder
(``student_run`` in conftest.py: a tiny llama student trained 2 steps, weights kept)."""

from __future__ import annotations

import json
import re

import pytest
import torch
import yaml
from conftest import write_planets

from saliency_distill.cli.main import main

CHOICE_KEYS = {"id", "prediction", "gold", "correct", "choices", "choice_logprobs", "ranked_choice", "ranked_correct"}


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _test_examples(run):
    return _jsonl(run / "data" / "test.jsonl")


def test_student_record_is_kept_with_the_weights(student_run):
    record = json.loads((student_run / "students" / "random-words" / "seed0" / "model" / "saliency_distill.json")
                        .read_text())
    assert record["kind"] == "saliency-distill student" and record["mode"] == "random-words" and record["seed"] == 0
    assert record["format"] == "suffix" and record["predict_tag"] == "predict"
    assert record["predict_template"] == "{input}\npredict:"
    assert record["prompt_template"] == record["task"]["template"] + "\npredict:"
    assert record["task"]["input_fields"]["choices"] == "options" and record["task"]["input_fields"]["label"] == "answer"
    run_config = yaml.safe_load((student_run / "config.yaml").read_text())
    assert record["alpha"] == run_config["student"]["alpha"] == 0.9  # the default the run was made with
    assert record["random_words_k"] == 3 and record["teacher"] is None
    result = json.loads((student_run / "students" / "random-words" / "seed0" / "result.json").read_text())
    assert record["config_hash"] == result["config_hash"] and record["trained"]["steps"] == 2
    assert len(record["run_config_hash"]) == 16


def test_predict_on_a_run_split_gives_evaluation_rows(student_run, tmp_path, capsys):
    out = tmp_path / "preds.jsonl"
    assert main(["-q", "predict", "--run", str(student_run), "--mode", "standard", "--split", "test",
                 "--output", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 5 predictions" in printed and "examples/s" in printed
    rows = _jsonl(out)
    evaluated = _jsonl(student_run / "students" / "standard" / "seed0" / "predictions.jsonl")
    assert [r["id"] for r in rows] == [r["id"] for r in evaluated] == [ex["id"] for ex in _test_examples(student_run)]
    for row, ev in zip(rows, evaluated):
        assert set(row) == CHOICE_KEYS
        assert {k: row[k] for k in ev} == ev  # prediction, gold, correct, ranked_choice, ranked_correct
        assert len(row["choice_logprobs"]) == len(row["choices"]) == 2
        assert row["ranked_choice"] == row["choices"][max(range(2), key=row["choice_logprobs"].__getitem__)]
        assert all(v < 0 for v in row["choice_logprobs"])


def test_predict_on_a_file_with_a_model_folder_matches_evaluate_student(student_run, tmp_path):
    from saliency_distill.config import build
    from saliency_distill.data import TaskConfig, get_task, load_prepared
    from saliency_distill.evaluation import EvalConfig, evaluate_student
    from saliency_distill.models import load_model

    model = student_run / "students" / "random-words" / "seed0" / "model"
    examples = load_prepared(student_run, "test")
    rows = [{"id": ex.id, "question": ex.fields["question"], "options": list(ex.choices), "answer": ex.label}
            for ex in examples]
    del rows[1]["answer"]  # an unlabelled row is answered without a gold
    data = tmp_path / "new.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out" / "preds.jsonl"
    assert main(["-q", "predict", "--model", str(model), "--input", str(data), "--output", str(out),
                 "--no-progress"]) == 0
    got = _jsonl(out)
    assert [r["id"] for r in got] == [ex.id for ex in examples]
    assert set(got[1]) == CHOICE_KEYS - {"gold", "correct", "ranked_correct"}
    assert all(set(r) == CHOICE_KEYS for i, r in enumerate(got) if i != 1)

    record = json.loads((model / "saliency_distill.json").read_text())
    task_cfg = build(TaskConfig, record["task"]["config"])
    expected, _ = evaluate_student(load_model(str(model)), get_task("file"), task_cfg, examples,
                                   EvalConfig(max_new_tokens=4), record["predict_template"])
    for row, ev in zip(got, expected):
        assert row["prediction"] == ev["prediction"] and row["ranked_choice"] == ev["ranked_choice"]
        if "gold" in row:
            assert row["correct"] == ev["correct"] and row["ranked_correct"] == ev["ranked_correct"]


@pytest.fixture(scope="module")
def exported(student_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "student-random-words"
    assert main(["-q", "export", "--run", str(student_run), "--mode", "random-words", "--seed", "0",
                 "--output", str(out)]) == 0
    return out


def test_export_writes_a_standalone_folder(exported):
    names = {p.name for p in exported.iterdir()}
    assert {"config.json", "model.safetensors", "saliency_distill.json", "README.md", "run_config.yaml"} <= names
    assert "tokenizer.json" in names or "tokenizer_config.json" in names
    assert not {n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl"))} and "training.json" not in names
    record = json.loads((exported / "saliency_distill.json").read_text())
    assert record["exported_from"]["mode"] == "random-words"


def _prompt(record, ex):
    options = record["choice_separator"].join(
        record["choice_format"].format(letter=record["choice_letters"][i], choice=c) for i, c in enumerate(ex["choices"]))
    return record["prompt_template"].format(**ex["fields"], choices=options)


def test_plain_transformers_on_the_export_reproduces_predict(student_run, exported, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "preds.jsonl"
    assert main(["-q", "predict", "--run", str(student_run), "--mode", "random-words", "--split", "test",
                 "--batch-size", "1", "--output", str(out), "--no-progress"]) == 0
    predicted = _jsonl(out)
    tok = AutoTokenizer.from_pretrained(exported)
    model = AutoModelForCausalLM.from_pretrained(exported).eval()
    record = json.loads((exported / "saliency_distill.json").read_text())
    examples = _test_examples(student_run)[:3]
    for ex, row in zip(examples, predicted):
        inputs = tok(_prompt(record, ex), return_tensors="pt")
        gen = model.generate(**inputs, max_new_tokens=record["max_new_tokens"], do_sample=False,
                             pad_token_id=tok.pad_token_id)
        text = tok.decode(gen[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        assert text.strip().split("\n", 1)[0].strip() == row["prediction"]

    # The card's own snippet, run as written (its folder line pointed here), gives the same answers.
    card = (exported / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    code = re.sub(r'^folder = .*$', f'folder = "{exported}"', code, flags=re.M)
    code = "\n".join(line for line in code.splitlines() if not line.startswith("print("))
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - the card's documented usage
    for ex, row in zip(examples, predicted):
        assert namespace["answer"](ex["fields"], ex["choices"]) == row["prediction"]
        torch.testing.assert_close(torch.tensor(namespace["option_logprobs"](ex["fields"], ex["choices"])),
                                   torch.tensor(row["choice_logprobs"]), atol=1e-4, rtol=1e-4)


def test_model_card_has_front_matter_results_and_licences(exported):
    card = (exported / "README.md").read_text()
    assert card.startswith("---\n")
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["library_name"] == "transformers" and header["pipeline_tag"] == "text-generation"
    assert {"saliency-distill", "mode-random-words", "task-file"} <= set(header["tags"])
    assert "base_model" not in header  # a local folder is no hub id
    for section in ("## Use", "## Training", "## Results", "## Reproduce", "## Licences"):
        assert section in card
    assert "| mode | seeds | accuracy (%) mean ± std" in card
    assert re.search(r"^\| (\*\*)?random-words(\*\*)? \| 1 \|", card, re.M)  # the report's table, reused
    assert "- random-words vs standard: " in card  # the report's paired bootstrap, reused
    assert "How k and alpha were chosen: set in the run's config" in card  # rationale.k=3, not the default 5
    assert "student.modes=[random-words] student.seeds=[0] student.keep_models=true" in card
    assert "saliency-distill export --run" in card
    assert "Question: {question}" in card and "predict:" in card


def test_front_matter_names_hub_ids_and_licences():
    from saliency_distill.reporting.card import front_matter

    record = {"model": {"base": "smollm2-135m-instruct", "kind": "causal"}, "mode": "saliency",
              "task": {"name": "socialiqa", "config": {"name": "socialiqa"}}}
    meta = front_matter(record)
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and meta["license"] == "apache-2.0"
    assert meta["datasets"] == ["allenai/social_i_qa"] and meta["library_name"] == "transformers"


def test_a_csv_with_other_column_names_is_mapped_by_task_fields(student_run, tmp_path):
    import csv

    examples = _test_examples(student_run)[:2]
    data = tmp_path / "rows.csv"
    with open(data, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["q", "opts", "gold"])  # the first row has no gold
        writer.writerows([ex["fields"]["question"], "|".join(ex["choices"]), ex["label"] if i else ""]
                         for i, ex in enumerate(examples))
    out = tmp_path / "preds.jsonl"
    assert main(["-q", "predict", "--run", str(student_run), "--mode", "standard", "--input", str(data),
                 "--output", str(out), "--no-progress", "task.fields.content=[q]", "task.fields.choices=opts",
                 "task.fields.label=gold"]) == 0
    rows = _jsonl(out)
    assert [r["id"] for r in rows] == ["row-0", "row-1"]
    assert "gold" not in rows[0] and rows[1]["gold"] == examples[1]["label"]
    assert [r["choices"] for r in rows] == [ex["choices"] for ex in examples]


def test_keeping_weights_later_trains_the_student_again(tmp_path, tiny_model_dirs, capsys):
    """The error's advice works: `train` with student.keep_models=true on a finished run without
    kept weights trains that student again and keeps them with the record."""
    rows = [{"question": f"Is {i} even?", "options": ["yes", "no"], "answer": "yes" if i % 2 == 0 else "no"}
            for i in range(20)]
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = [f"run_dir={tmp_path / 'run'}", "task.name=file", f"task.path={data}", "task.fields.choices=options",
            "task.fields.label=answer", f"student.model.name={tiny_model_dirs['llama']}",
            f"teacher.model.name={tiny_model_dirs['qwen2']}", "student.modes=[standard]", "student.train.max_steps=1",
            "student.train.progress_bar=false", "student.eval.max_new_tokens=2", "progress=false"]
    assert main(["-q", "train", *args]) == 0
    predict = ["-q", "predict", "--run", str(tmp_path / "run"), "--mode", "standard", "--split", "test",
               "--output", str(tmp_path / "preds.jsonl"), "--no-progress"]
    assert main(predict) == 2
    assert "student.keep_models=true" in capsys.readouterr().err
    before = json.loads((tmp_path / "run" / "students" / "standard" / "seed0" / "result.json").read_text())
    assert main(["-q", "train", *args, "student.keep_models=true"]) == 0
    after = json.loads((tmp_path / "run" / "students" / "standard" / "seed0" / "result.json").read_text())
    assert after["config_hash"] == before["config_hash"]
    assert main(predict) == 0 and len(_jsonl(tmp_path / "preds.jsonl")) == after["n"]


def test_run_ends_with_a_predict_command_that_works(tmp_path, tiny_model_dirs, capsys):
    import shlex

    data = write_planets(tmp_path)
    args = [f"run_dir={tmp_path / 'run'}", "task.name=file", f"task.path={data}", "task.fields.choices=options",
            "task.fields.label=answer", f"student.model.name={tiny_model_dirs['llama']}", "student.modes=[standard]",
            "student.train.max_steps=1", "student.train.progress_bar=false", "student.eval.max_new_tokens=4",
            "progress=false"]
    assert main(["-q", "train", *args]) == 0
    out = capsys.readouterr().out
    assert "report.html" in out and "student.keep_models=true" in out  # no weights kept: says how to keep them
    assert main(["-q", "train", *args, "student.keep_models=true"]) == 0
    out = capsys.readouterr().out.splitlines()
    line = next(x for x in out if x.startswith("try the best student by validation accuracy (standard, seed 0, "))
    assert any(x.startswith("next, with your own data: ") and "task.unlabeled=" in x for x in out)
    result = json.loads((tmp_path / "run" / "students" / "standard" / "seed0" / "result.json").read_text())
    assert 0.0 <= result["validation_accuracy"] <= 1.0 and f"{100 * result['validation_accuracy']:.1f}% on" in line
    command = shlex.split(line.split(": ", 1)[1])
    assert command[:2] == ["saliency-distill", "predict"]
    question = json.loads((tmp_path / "run" / "report" / "try_question.jsonl").read_text())
    assert set(question) == {"question", "options"}  # the columns the student reads, no answer
    assert main(["-q", *command[1:]]) == 0
    answers = [json.loads(x) for x in (tmp_path / "run" / "report" / "try_question.predictions.jsonl")
               .read_text().splitlines()]
    assert len(answers) == 1 and answers[0]["ranked_choice"] in question["options"]


def test_export_of_a_student_taught_by_the_teacher_names_it_in_the_card(student_run, tmp_path):
    out = tmp_path / "taught"
    assert main(["-q", "export", "--run", str(student_run), "--mode", "teacher-label", "--output", str(out)]) == 0
    record = json.loads((out / "saliency_distill.json").read_text())
    assert record["teacher"]["model"] == json.loads((student_run / "teacher" / "metrics.json").read_text())["model"]
    assert record["teacher"]["format"] and record["teacher"]["finetune"] is False
    card = (out / "README.md").read_text()
    assert f"- Teacher: `{record['teacher']['model']}`" in card and "Teacher accuracy (teacher/metrics.json)" in card
