"""benchmarks/study_state.py: a run folder saved without the dataset's text comes back whole."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from conftest import write_planets

from saliency_distill.cli.main import main

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import study_state  # noqa: E402


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model_dirs):
    """A finished tiny run with a rationale store, faithfulness rows, students and a report."""
    root = tmp_path_factory.mktemp("state_run")
    data = write_planets(root)
    args = [f"run_dir={root / 'run'}", "task.name=file", f"task.path={data}", "task.fields.choices=options",
            "task.fields.label=answer", f"teacher.model.name={tiny_model_dirs['qwen2']}", "teacher.finetune=false",
            f"student.model.name={tiny_model_dirs['llama']}", "student.modes=[standard,saliency]",
            "student.train.max_steps=1", "student.train.progress_bar=false", "student.eval.max_new_tokens=3",
            "analysis.faithfulness=true", "progress=false", "rationale.k=2"]
    assert main(["-q", "run", *args]) == 0
    return root / "run", args


def _prompts_and_texts(run: Path):
    from saliency_distill.config import load_config
    from saliency_distill.experiment import ExperimentConfig, prepare_stage

    cfg = load_config(ExperimentConfig, run / "config.yaml", [])
    examples = [ex for split in prepare_stage(cfg).values() for ex in split]
    return study_state.teacher_prompts(cfg), study_state.example_texts(examples, longer_than=10)


def test_saved_state_has_no_text_and_restores_byte_for_byte(tiny_run, tmp_path, monkeypatch):
    tiny_run, args = tiny_run
    prompts, texts = _prompts_and_texts(tiny_run)
    assert texts and all(t.startswith("Which planet") for t in texts)
    state = tmp_path / "state"
    n = study_state.save(tiny_run, state, texts)
    saved = sorted(p.relative_to(state) for p in state.rglob("*") if p.is_file())
    assert n == len(saved) and Path("rationales/train.jsonl") in saved and Path("teacher/metrics.json") in saved
    assert not any(p.parts[0] == "data" or p.suffix == ".html" for p in saved)
    for p in saved:
        assert "Which planet" not in (state / p).read_text()  # no question, not even inside a prompt
    packed = [json.loads(line) for line in (state / "rationales/train.jsonl").read_text().splitlines()[1:]]
    assert packed and all(len(w) == 3 and "rationale" not in r for r in packed for w in r["words"])

    fresh = tmp_path / "fresh"
    assert study_state.restore(state, fresh, prompts) == n
    faithfulness = {p for p in saved if p.name.endswith(".faithfulness.jsonl")}
    assert faithfulness  # the one kind of file that comes back without something (its cut words)
    for p in saved:
        if p not in faithfulness:
            assert (fresh / p).read_bytes() == (tiny_run / p).read_bytes(), p
    assert study_state.restore(state, fresh, prompts) == 0  # files already there are left alone

    # the restored run is one the pipeline resumes: nothing is attributed or trained again
    import saliency_distill.rationale as rationale
    import saliency_distill.student.stage as student_stage

    def never(*a, **k):
        raise AssertionError("recomputed what was restored")

    monkeypatch.setattr(rationale, "attribute_split", never)
    monkeypatch.setattr(student_stage, "train_supervised", never)
    assert main(["-q", "run", *args, f"run_dir={fresh}"]) == 0


def test_a_changed_prompt_is_refused_on_restore(tiny_run, tmp_path):
    tiny_run, _ = tiny_run
    prompts, texts = _prompts_and_texts(tiny_run)
    study_state.save(tiny_run, tmp_path / "state", texts)
    first = next(iter(prompts))
    with pytest.raises(SystemExit, match=f"example {first}: its prompt is not the one"):
        study_state.restore(tmp_path / "state", tmp_path / "fresh", {**prompts, first: prompts[first] + " "})


def test_save_stops_at_a_file_with_example_text_and_keeps_the_old_state(tiny_run, tmp_path):
    tiny_run, _ = tiny_run
    _, texts = _prompts_and_texts(tiny_run)
    state = tmp_path / "state"
    study_state.save(tiny_run, state, texts)
    before = sorted(p.name for p in state.rglob("*"))
    leaky = tmp_path / "leaky"
    shutil.copytree(tiny_run, leaky)
    (leaky / "report" / "notes.md").write_text(f"an example: {texts[0]}\n")
    with pytest.raises(SystemExit, match="notes.md: holds an example's text"):
        study_state.save(leaky, state, texts)
    assert sorted(p.name for p in state.rglob("*")) == before and not (tmp_path / "state.tmp").exists()


def test_a_long_predicted_answer_is_saved_as_its_hash_and_the_report_still_reads_it(tiny_run, tmp_path):
    # a student that writes out an option's text (the dataset's) must not stop the save
    tiny_run, _ = tiny_run
    _, texts = _prompts_and_texts(tiny_run)
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    preds = run / "students" / "standard" / "seed0" / "predictions.jsonl"
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    rows[0]["prediction"] = texts[0]
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    study_state.save(run, tmp_path / "state", texts)
    saved = [json.loads(line) for line in (tmp_path / "state" / preds.relative_to(run)).read_text().splitlines()]
    assert saved[0]["prediction"] is None and saved[0]["prediction_sha256"] == study_state._sha(texts[0])
    assert [(r["id"], r["correct"]) for r in saved] == [(r["id"], r["correct"]) for r in rows]
    short = [r for r in rows if all(len(str(r.get(k))) <= study_state.TEXT_LIMIT for k in ("prediction", "gold"))]
    assert short and all(r in saved for r in short)  # rows with short answers are saved as they are


def test_two_saves_of_one_run_at_once_take_turns(tiny_run, tmp_path):
    # the periodic saver and the end of a job used to race on state.tmp (FileNotFoundError)
    import threading

    tiny_run, _ = tiny_run
    _, texts = _prompts_and_texts(tiny_run)
    errors: list[BaseException] = []

    def one_save():
        try:
            for _ in range(3):
                study_state.save(tiny_run, tmp_path / "state", texts)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=one_save) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert not (tmp_path / "state.tmp").exists() and (tmp_path / "state" / "config.yaml").exists()


def test_a_save_while_the_job_writes_leaves_out_its_temporary_files(tiny_run, tmp_path, monkeypatch):
    # the periodic saver met a student's temporary file that was renamed before it read it (FileNotFoundError)
    tiny_run, _ = tiny_run
    _, texts = _prompts_and_texts(tiny_run)
    (tiny_run / "students" / ".tmp123P90").write_text("{}")  # a write in progress
    (tiny_run / "students" / ".best.tmp").mkdir()
    (tiny_run / "students" / ".best.tmp" / "metrics.json").write_text("{}")
    vanished = tiny_run / "report" / "gone.json"
    vanished.write_text("{}")
    read_text = Path.read_text

    def renamed_meanwhile(self, *args, **kwargs):
        if self == vanished:
            raise FileNotFoundError(str(self))
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", renamed_meanwhile)
    study_state.save(tiny_run, tmp_path / "state", texts)
    saved = {p.relative_to(tmp_path / "state").as_posix() for p in (tmp_path / "state").rglob("*") if p.is_file()}
    assert not any(name.split("/")[-1].startswith(".") or "/." in name for name in saved)
    assert "report/gone.json" not in saved and "config.yaml" in saved


def _with_first_rationale(run: Path, to: Path, words) -> dict:
    """A copy of ``run`` whose first train rationale row has the words ``words(row)``."""
    shutil.copytree(run, to)
    store = to / "rationales" / "train.jsonl"
    lines = store.read_text().splitlines()
    row = json.loads(lines[1])
    row["rationale_words"] = words(row)
    row["rationale"] = " ".join(row["rationale_words"])
    store.write_text("\n".join([lines[0], json.dumps(row), *lines[2:]]) + "\n")
    return row


def test_a_rationale_that_its_rounded_scores_would_not_choose_comes_back_as_it_was(tiny_run, tmp_path):
    # a store keeps its scores rounded: words whose scores round alike can be chosen in an order
    # (or a set) that choosing again from the file would not give; restore keeps their positions
    tiny_run, _ = tiny_run
    prompts, texts = _prompts_and_texts(tiny_run)
    row = _with_first_rationale(tiny_run, tmp_path / "odd", lambda r: [r["words"][0][0], *r["rationale_words"][::-1]])
    from saliency_distill.rationale import RationaleConfig
    from saliency_distill.rationale.extract import reselect_row

    assert reselect_row(row, RationaleConfig(k=2))["rationale_words"] != row["rationale_words"]
    study_state.save(tmp_path / "odd", tmp_path / "state", texts)
    study_state.restore(tmp_path / "state", tmp_path / "fresh", prompts)
    store = "rationales/train.jsonl"
    assert (tmp_path / "fresh" / store).read_bytes() == (tmp_path / "odd" / store).read_bytes()


def test_save_refuses_a_rationale_it_could_not_make_again(tiny_run, tmp_path):
    tiny_run, _ = tiny_run
    _, texts = _prompts_and_texts(tiny_run)
    row = _with_first_rationale(tiny_run, tmp_path / "odd", lambda r: [*r["rationale_words"], "extra"])
    with pytest.raises(SystemExit, match=f"train.jsonl: example {row['id']}: its rationale is not made of its own"):
        study_state.save(tmp_path / "odd", tmp_path / "state", texts)
    assert not (tmp_path / "state.tmp").exists()


def test_a_saved_state_packs_into_one_archive_and_comes_back_the_same(tmp_path):
    state = tmp_path / "state" / "ds"
    files = {"config.yaml": "run_dir: x\n", "students/standard/seed0/predictions.jsonl": '{"id": "a"}\n',
             "teacher/metrics.json": "{}\n"}
    for rel, text in files.items():
        (state / rel).parent.mkdir(parents=True, exist_ok=True)
        (state / rel).write_text(text)
    archive = study_state.pack(state)
    assert archive == tmp_path / "state" / "ds.tar.xz" and archive.is_file() and not state.exists()
    first = archive.read_bytes()
    folder = study_state.state_folder("ds", tmp_path / "state", tmp_path / "cache")
    assert folder == tmp_path / "cache" / "ds"
    assert {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*") if p.is_file()} == files
    study_state.pack(study_state.unpack(archive, tmp_path / "again"))  # the same files pack to the same bytes
    assert (tmp_path / "again" / "ds.tar.xz").read_bytes() == first
    with pytest.raises(SystemExit, match="no saved state for other"):
        study_state.state_folder("other", tmp_path / "state", tmp_path / "cache")


def test_any_run_folder_saves_by_name_and_comes_back_where_asked(tiny_run, tmp_path):
    run, _ = tiny_run
    state = tmp_path / "state"
    study_state.main(["save", "--run-dir", str(run), "--name", "tiny", "--state", str(state)])
    assert (state / "tiny.tar.xz").is_file() and not (state / "tiny").exists()
    other = tmp_path / "other"
    study_state.main(["restore", "--name", "tiny", "--run-dir", str(other), "--state", str(state)])
    for rel in ("rationales/train.jsonl", "students/saliency/seed0/predictions.jsonl", "teacher/metrics.json"):
        assert (other / rel).read_text() == (run / rel).read_text(), rel
    with pytest.raises(SystemExit):
        study_state.main(["save", "--state", str(state)])  # neither a dataset nor a run folder


@pytest.mark.parametrize("archive", sorted((Path(__file__).parents[1] / "benchmarks" / "state").glob("*.tar.xz")),
                         ids=lambda p: p.name)
def test_every_committed_state_holds_a_config_that_loads_today(archive, tmp_path):
    """A config key removed from the code must not strand a committed state: its run's config.yaml
    (read from the archive without unpacking the rest) still loads, the way restore loads it."""
    import tarfile

    from saliency_distill.errors import ConfigError

    name = archive.name.removesuffix(study_state.ARCHIVE_SUFFIX)
    with tarfile.open(archive, "r:xz") as tar:
        member = next((m for m in tar if m.name == f"{name}/config.yaml"), None)
        if member is None:
            pytest.skip(f"{archive.name} holds a study folder, whose config is rebuilt from configs/")
        text = tar.extractfile(member).read().decode()
    (tmp_path / "config.yaml").write_text(text)
    try:
        study_state.saved_config(tmp_path / "config.yaml", [])
    except ConfigError as err:
        pytest.fail(f"{archive.name}: {err}")


def test_a_state_saved_before_a_key_existed_restores_with_that_runs_behaviour(tmp_path):
    """The study's e-SNLI state was saved when demonstrations were drawn at random; balanced became the
    default later. Its config, lacking the key, must load with the random draw (its prompts' hashes
    depend on it), while a config that names the key keeps it."""
    import yaml

    old = {"run_dir": "runs/x", "task": {"name": "esnli", "path": "data"}, "teacher": {"shots": 3}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(old))
    assert study_state.saved_config(path, []).teacher.demonstrations == "random"
    old["teacher"]["demonstrations"] = "balanced"
    path.write_text(yaml.safe_dump(old))
    cfg = study_state.saved_config(path, ["run_dir=elsewhere"])
    assert cfg.teacher.demonstrations == "balanced" and cfg.run_dir == "elsewhere"
