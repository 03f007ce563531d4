from __future__ import annotations

import json

import pytest

from saliency_distill.cli.main import build_parser, main

SUBCOMMANDS = ["prepare", "teach", "attribute", "analyze", "preview", "train", "run", "models", "tasks", "config", "env",
               "predict", "export", "curve", "tune"]


@pytest.mark.parametrize("argv", [["--help"]] + [[c, "--help"] for c in SUBCOMMANDS])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    assert "usage: saliency-distill" in capsys.readouterr().out


def test_every_subcommand_is_tested():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(SUBCOMMANDS)


@pytest.fixture
def data_file(tmp_path):
    rows = [{"question": f"Which is bigger, {i} or {i + 1}?", "options": [str(i), str(i + 1)], "answer": str(i + 1)}
            for i in range(20)]
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _file_args(tmp_path, data_file):
    return [f"run_dir={tmp_path / 'run'}", "task.name=file", f"task.path={data_file}",
            "task.fields.choices=options", "task.fields.label=answer"]


def test_prepare_prints_sizes_and_writes_files(tmp_path, data_file, capsys):
    assert main(["-q", "prepare", *_file_args(tmp_path, data_file)]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "14 examples" in out and "test" in out and "4 examples" in out
    for split, n in (("train", 14), ("validation", 2), ("test", 4)):
        lines = (tmp_path / "run" / "data" / f"{split}.jsonl").read_text().splitlines()
        assert len(lines) == n
    assert "task:" in (tmp_path / "run" / "config.yaml").read_text()


def test_prepare_with_yaml_config(tmp_path, data_file, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"run_dir: {tmp_path / 'r2'}\ntask:\n  name: file\n  path: {data_file}\n  test_fraction: 0.5\n"
                   "  fields:\n    choices: options\n    label: answer\n")
    assert main(["-q", "prepare", str(cfg)]) == 0
    assert len((tmp_path / "r2" / "data" / "test.jsonl").read_text().splitlines()) == 10


@pytest.mark.parametrize(
    "extra, message",
    [
        (["task.nmae=x"], "unknown config key 'task.nmae'"),
        (["task.name=nope"], "unknown task 'nope'"),
        (["task.fields.label=missing"], "mine.jsonl:1: missing field 'missing'"),
        (["student.model.name=smollm2-135m-instrct"], "config key 'student.model.name': 'smollm2-135m-instrct' is not"),
        (["teacher.model.name=./no/such/folder"], "config key 'teacher.model.name': './no/such/folder' is not"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, data_file, capsys, extra, message):
    assert main(["-q", "prepare", *_file_args(tmp_path, data_file), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
    assert not (tmp_path / "run" / "data" / "manifest.json").exists()
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_missing_data_file(tmp_path, capsys):
    code = main(["-q", "prepare", f"run_dir={tmp_path}", "task.name=cqa", f"task.path={tmp_path / 'nope'}"])
    assert code == 2
    assert "DSbS data folder for task 'cqa' not found" in capsys.readouterr().err


def test_two_config_files_is_an_error(tmp_path, capsys):
    assert main(["config", "a.yaml", "b.yaml"]) == 2
    assert "unexpected argument 'b.yaml'" in capsys.readouterr().err


def test_tasks_models_config_listings(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for name in ("cqa", "svamp", "anli1", "esnli", "quartz", "file", "hf"):
        assert f"\n{name} " in "\n" + out
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m-instruct" in out and "qwen2.5-coder-1.5b-instruct" in out
    assert main(["config", "--keys"]) == 0
    assert "task.fields.content" in capsys.readouterr().out
    assert main(["config", "task.name=svamp"]) == 0
    assert "name: svamp" in capsys.readouterr().out


def test_preview_with_tiny_models(tmp_path, data_file, tiny_model_dirs, capsys):
    args = _file_args(tmp_path, data_file) + [f"teacher.model.name={tiny_model_dirs['qwen2']}",
                                              f"student.model.name={tiny_model_dirs['t5']}", "preview=4"]
    assert main(["-q", "preview", *args]) == 0
    out = capsys.readouterr().out
    assert "zero-shot preview on 4 test examples" in out
    result = json.loads((tmp_path / "run" / "preview.json").read_text())
    assert result["n"] == 4
    for row in result["models"].values():
        assert 0.0 <= row["accuracy_sum"] <= 1.0
        assert len(row["answers_sum"]) == 4


@pytest.mark.parametrize("extra, key", [
    (["teacher.shots=40"], "teacher.shots"),  # more demonstrations than the 14 train examples
    (["teacher.format=letter", "task.fields.choices=null"], "teacher.format"),  # letter on a free-form task
    (["teacher.shots=2", "teacher.format=nonsense"], "teacher.format"),
])
def test_teach_bad_teacher_prompt_is_one_line_and_writes_nothing(tmp_path, data_file, tiny_model_dirs, capsys,
                                                                 extra, key):
    args = _file_args(tmp_path, data_file) + [f"teacher.model.name={tiny_model_dirs['qwen2']}",
                                              "teacher.finetune=false", *extra]
    assert main(["-q", "teach", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and key in err
    assert not (tmp_path / "run" / "teacher").exists()


def test_teach_prints_the_teacher_quality(tmp_path, data_file, tiny_model_dirs, capsys):
    args = _file_args(tmp_path, data_file) + [f"teacher.model.name={tiny_model_dirs['qwen2']}",
                                              "teacher.finetune=false", "teacher.shots=2"]
    assert main(["-q", "teach", *args]) == 0
    out = capsys.readouterr().out
    assert "format=letter, shots=2" in out and "95% CI" in out and "answers: " in out
    metrics = json.loads((tmp_path / "run" / "teacher" / "metrics.json").read_text())
    assert metrics["quality"]["test"]["n"] == metrics["accuracy"]["test"]["n"]
    assert len(metrics["prompt"]["demonstrations"]) == 3


@pytest.mark.parametrize("die_after", [1, 3])  # in the first split (train: 2 chunks), in the second
def test_teach_killed_mid_split_resumes_without_redoing_or_duplicating(tmp_path, data_file, tiny_model_dirs,
                                                                        monkeypatch, die_after):
    from saliency_distill.teacher import answer

    class Killed(BaseException):  # not an Exception: nothing on the way catches it, as with SIGKILL
        pass

    teacher = [f"teacher.model.name={tiny_model_dirs['qwen2']}", "teacher.finetune=false", "teacher.batch_size=1"]
    whole, cut = _file_args(tmp_path / "whole", data_file) + teacher, _file_args(tmp_path / "cut", data_file) + teacher
    assert main(["-q", "teach", *whole]) == 0
    real, calls = answer.answer_examples, []

    def answering(lm, prompter, chunk, cfg, die_after=None):
        if die_after is not None and len(calls) == die_after:
            raise Killed
        calls.append([ex.id for ex in chunk])
        return real(lm, prompter, chunk, cfg)

    monkeypatch.setattr(answer, "answer_examples", lambda *a: answering(*a, die_after=die_after))
    with pytest.raises(Killed):
        main(["-q", "teach", *cut])
    folder = tmp_path / "cut" / "run" / "teacher"
    first = [i for chunk in calls for i in chunk]  # chunks of 8 examples (8 batches of 1)
    if die_after == 1:  # one chunk of train
        assert len(first) == 8 and len((folder / "answers_train.partial.jsonl").read_text().splitlines()) == 1 + 8
        assert not (folder / "answers_train.jsonl").exists()
    else:  # train (14) done, then one chunk of the next split: train is not answered again below
        assert len(first) == 14 + len(calls[-1])
        assert len((folder / "answers_train.partial.jsonl").read_text().splitlines()) == 1 + 14
        assert not (folder / "answers_train.jsonl").exists()  # written once every split is in (calibration)
    assert not (folder / "metrics.json").exists()
    calls.clear()
    monkeypatch.setattr(answer, "answer_examples", answering)
    assert main(["-q", "teach", *cut]) == 0
    again = [i for chunk in calls for i in chunk]
    want = {p.name: p.read_text() for p in (tmp_path / "whole" / "run" / "teacher").glob("answers_*.jsonl")}
    total = sum(len(text.splitlines()) for text in want.values())  # train 14, validation 2, test 4
    assert not set(again) & set(first) and len(again) == total - len(first)
    assert {p.name: p.read_text() for p in folder.glob("answers_*.jsonl")} == want  # and no partial file left


def test_python_dash_m_runs_the_cli():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "saliency_distill", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "saliency-distill" in (out.stdout + out.stderr)
