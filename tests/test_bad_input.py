"""Bad input, class by class, through the command line: one line on stderr naming the file, row
or key, exit 2, and nothing written to the run folder. docs/pipeline.md lists the classes.

An error that can only be found once the data are prepared (more demonstrations than the train
split has) leaves the data stage's finished outputs and the fresh folder's config.yaml, and
nothing of the stage that refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from saliency_distill.cli.main import main

# (name, command, extra arguments, what the one line says). "{tmp}" is the test's folder.
CASES = [
    ("unknown config key", "prepare", ["task.nmae=x"], "unknown config key 'task.nmae'"),
    ("wrong value type", "prepare", ["task.max_train=many"], "task.max_train"),
    ("unknown task", "prepare", ["task.name=nope"], "unknown task 'nope'"),
    ("missing data folder", "prepare", ["task.name=cqa", "task.path={tmp}/nope"],
     "DSbS data folder for task 'cqa' not found"),
    ("missing field in a data row", "prepare", ["task.fields.label=missing"], "mine.jsonl:1: missing field 'missing'"),
    ("broken data row", "prepare", ["task.path={tmp}/broken.jsonl"], "broken.jsonl:3"),
    ("invalid YAML config", "prepare", ["{tmp}/bad.yaml"], "invalid YAML"),
    ("model name typo", "teach", ["student.model.name=smollm2-135m-instrct"], "config key 'student.model.name'"),
    ("missing model folder", "teach", ["teacher.model.name=./no/such/model"], "config key 'teacher.model.name'"),
    ("unknown dtype", "teach", ["teacher.model.dtype=float8"], "dtype"),
    ("unknown teacher format", "teach", ["teacher.format=nonsense"], "teacher.format"),
    ("letter format on a free-form task", "teach", ["teacher.format=letter", "task.fields.choices=null"],
     "teacher.format"),
    ("calibration of a free-form task", "teach", ["teacher.calibration=contextual", "task.fields.choices=null"],
     "teacher.calibration"),
    ("unknown calibration", "teach", ["teacher.calibration=platt"], "teacher.calibration"),
    ("prior calibration without validation answers", "teach",
     ["teacher.calibration=prior", "teacher.splits=[train,test]"], "teacher.calibration"),
    ("empty stop sequence", "teach", ["teacher.stop=['Human:', '']"], "teacher.stop"),
    ("answers reused from a folder that is no teacher run", "teach", ["teacher.reuse_answers=[no/such/run]"],
     "teacher.reuse_answers"),
    ("more shots than train examples", "teach", ["teacher.shots=40", "teacher.finetune=false"], "teacher.shots"),
    ("unknown attribution method", "attribute", ["attribution.method=gradcam"], "unknown method 'gradcam'"),
    ("rationale size out of range", "attribute", ["rationale.k=0"], "rationale.k"),
    ("contrast with a non-linear method", "attribute", ["attribution.method=saliency", "attribution.contrast=true"],
     "attribution.contrast"),
    ("unknown training mode", "train", ["student.modes=[distill]"], "unknown training mode 'distill'"),
    ("alpha out of range", "train", ["student.alpha=0"], "student.alpha"),
    ("a silent key", "train", ["student.train.seed=3"], "student.train.seed"),
    ("unknown prompt format", "train", ["student.format=infix"], "student.format"),
    ("early-stopping patience below 1", "train", ["student.early_stopping.patience=0"],
     "student.early_stopping.patience"),
    ("empty pool", "prepare", ["task.unlabeled={tmp}/empty.jsonl"], "empty.jsonl: task.unlabeled holds no rows"),
    ("no labels kept", "prepare", ["task.labeled=0"], "config key 'task.labeled': 0 must be at least 1"),
    ("more labels kept than train has", "prepare", ["task.labeled=500"],
     "config key 'task.labeled': 500 is more than the 14 examples"),
    ("pool row without the input fields", "prepare", ["task.unlabeled={tmp}/noinput.jsonl"],
     "noinput.jsonl:2: missing field 'question'"),
    ("pool id shared with train or test", "prepare",
     ["task.path={tmp}/withids.jsonl", "task.fields.id=id", "task.unlabeled={tmp}/clash.jsonl"],
     "clash.jsonl: pool example id 'r3' is also in"),
    ("a pool size without a pool", "prepare", ["task.max_pool=10"], "config key 'task.max_pool'"),
    ("pool row without options", "prepare", ["task.unlabeled={tmp}/nooptions.jsonl"],
     "nooptions.jsonl:1: missing field 'options'"),
    ("a pool mode without a pool", "train", ["student.modes=[standard,pool-label]"], "config key 'student.modes'"),
    ("pool confidence out of range", "train", ["task.labeled=5", "student.modes=[pool-label]",
                                               "student.pool_min_confidence=1.5"], "student.pool_min_confidence"),
    ("a random pool draw without a threshold", "train", ["task.labeled=5", "student.modes=[pool-label]",
                                                         "student.pool_keep=random"], "student.pool_keep"),
]


AFTER_DATA = {"more shots than train examples", "answers reused from a folder that is no teacher run"}


@pytest.fixture
def folder(tmp_path, tiny_model_dirs):
    rows = [{"question": f"Which is bigger, {i} or {i + 1}?", "options": [str(i), str(i + 1)], "answer": str(i + 1)}
            for i in range(20)]
    (tmp_path / "mine.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "broken.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]) + "{not json\n")
    (tmp_path / "bad.yaml").write_text("task: [unclosed\n")
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "nooptions.jsonl").write_text(json.dumps({"question": "Which is bigger, 7 or 8?"}) + "\n")
    (tmp_path / "noinput.jsonl").write_text(json.dumps({"question": "Which is bigger, 7 or 8?", "options": ["7", "8"]})
                                            + "\n" + json.dumps({"options": ["1", "2"]}) + "\n")
    (tmp_path / "withids.jsonl").write_text("".join(json.dumps({**r, "id": f"r{i}"}) + "\n" for i, r in enumerate(rows)))
    (tmp_path / "clash.jsonl").write_text(json.dumps({"question": "Which is bigger, 3 or 4?", "options": ["3", "4"],
                                                      "id": "r3"}) + "\n")
    base = [f"run_dir={tmp_path / 'run'}", "task.name=file", f"task.path={tmp_path / 'mine.jsonl'}",
            "task.fields.choices=options", "task.fields.label=answer",
            f"teacher.model.name={tiny_model_dirs['qwen2']}", f"student.model.name={tiny_model_dirs['llama']}",
            "progress=false"]
    return tmp_path, base


@pytest.mark.parametrize("name, command, extra, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(folder, capsys, name, command, extra, message):
    tmp, base = folder
    extra = [e.replace("{tmp}", str(tmp)) for e in extra]
    config_files = [e for e in extra if e.endswith(".yaml")]
    args = config_files + base + [e for e in extra if not e.endswith(".yaml")]
    assert main(["-q", command, *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("saliency-distill: error: "), err
    assert message in err, err
    run = tmp / "run"
    written = [p.relative_to(run) for p in run.rglob("*") if p.is_file()] if run.exists() else []
    if name in AFTER_DATA:
        written = [p for p in written if p.parts[0] != "data" and str(p) != "config.yaml"]
    assert not written, written


def test_at_least_fifteen_classes_are_covered():
    assert len({c[0] for c in CASES}) >= 15


# Using a student (predict, export) on the tiny kept run of conftest.py: (name, arguments, what the
# line says). "{run}" is that run, "{nokeep}" a copy of it without the students' weights, "{tmp}"
# the test's folder (input files; the outputs go to {tmp}/out); "{plain}" a model folder with no
# student record.
USE_CASES = [
    ("missing field in an input row", ["predict", "--run", "{run}", "--mode", "standard", "--input",
                                       "{tmp}/rows.jsonl"], "rows.jsonl:2: missing field 'question'"),
    ("input field override of another key", ["predict", "--run", "{run}", "--mode", "standard", "--input",
                                              "{tmp}/rows.jsonl", "task.name=cqa"], "task.fields.* keys only"),
    ("a model folder that is not a student", ["predict", "--model", "{plain}", "--input", "{tmp}/rows.jsonl"],
     "not a saliency-distill student (no saliency_distill.json"),
    ("student weights not kept", ["predict", "--run", "{nokeep}", "--mode", "standard", "--split", "test"],
     "re-run `saliency-distill train` with student.keep_models=true"),
    ("missing run folder", ["predict", "--run", "{tmp}/nope", "--mode", "standard", "--split", "test"],
     "not a run folder (no config.yaml)"),
    ("mode not trained in the run", ["predict", "--run", "{run}", "--mode", "saliency", "--split", "test"],
     "no student trained in mode 'saliency' (trained: random-words, standard, teacher-label)"),
    ("seed not trained in the run", ["predict", "--run", "{run}", "--mode", "standard", "--seed", "3", "--split",
                                     "test"], "no standard student with seed 3 (seeds: 0)"),
    ("export of weights not kept", ["export", "--run", "{nokeep}", "--mode", "standard"],
     "student.keep_models=true"),
    ("export into a non-empty folder", ["export", "--run", "{run}", "--mode", "standard", "--output", "{tmp}/full"],
     "full: folder exists and is not empty (use --overwrite to replace it)"),
]


@pytest.fixture
def use_folder(tmp_path, student_run, tiny_model_dirs):
    import shutil

    good = {"question": "Which is bigger, 1 or 2?", "options": ["1", "2"], "answer": "2"}
    (tmp_path / "rows.jsonl").write_text(json.dumps(good) + "\n" + json.dumps({"options": ["1", "2"]}) + "\n")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine\n")
    nokeep = tmp_path / "nokeep"
    shutil.copytree(student_run, nokeep, ignore=shutil.ignore_patterns("model"))
    return {"{run}": str(student_run), "{nokeep}": str(nokeep), "{tmp}": str(tmp_path),
            "{plain}": str(tiny_model_dirs["llama"])}


@pytest.mark.parametrize("name, args, message", USE_CASES, ids=[c[0] for c in USE_CASES])
def test_using_a_student_with_bad_input_is_one_line_exit_2_and_writes_nothing(use_folder, capsys, name, args,
                                                                               message):
    args = [use_folder.get(a, a).replace("{tmp}", use_folder["{tmp}"]) for a in args]
    if "--output" not in args:
        args += ["--output", f"{use_folder['{tmp}']}/out/" + ("preds.jsonl" if args[0] == "predict" else "exported")]
    before = sorted(p.relative_to(use_folder["{tmp}"]) for p in Path(use_folder["{tmp}"]).rglob("*"))
    assert main(["-q", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("saliency-distill: error: "), err
    assert message in err, err
    assert sorted(p.relative_to(use_folder["{tmp}"]) for p in Path(use_folder["{tmp}"]).rglob("*")) == before
