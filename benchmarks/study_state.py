"""Carry a study's run folder from one machine to the next, without the dataset's text.

    python benchmarks/study_state.py save --dataset esnli      runs/study/esnli -> benchmarks/state/esnli.tar.xz
    python benchmarks/study_state.py restore --dataset esnli   benchmarks/state/esnli.tar.xz -> runs/study/esnli
    python benchmarks/study_state.py pack --dataset esnli      a saved folder -> its archive (the folder removed)
    python benchmarks/study_state.py save --run-dir runs/pool_study/esnli --name pool_esnli   any run folder
    python benchmarks/study_state.py restore --name pool_esnli  back to the run_dir its saved config names

The saved state of a dataset is one compressed archive (``benchmarks/state/<dataset>.tar.xz``:
the tree holds code and results, not a thousand run files); :func:`state_folder` gives the
scripts that read it (seed intervals, calibration, clean targets) its files, unpacked once into
``runs/state/<dataset>``.

The study takes more hours than one machine lives, and ``runs/`` is not committed: ``save`` copies
what took compute (the teacher's answers, the rationale stores, faithfulness rows, tune's and the
run's students, reports) into a folder that is committed, and ``restore`` puts it back so that
``benchmarks/study.py`` resumes instead of starting over. The DSbS data must never be committed,
so ``save`` leaves out ``data/`` (``prepare`` makes it again, the same), HTML pages (they show the
examples), model weights and checkpoints, and strips the text from rationale rows: a row keeps its
word scores and character offsets, the hash of its prompt and where its rationale words stand among
its words; ``restore`` renders the prompt again from the prepared data, checks the hash and cuts the
words back out of it. Faithfulness rows lose their lists of cut words (nothing reads them back), and
a student's prediction rows keep a long answer (an option's text) only as its hash (the report
reads only whether each was correct). Before it replaces the saved folder, ``save``
checks that no example's text (question, premise, hypothesis, explanations) occurs in any file it
wrote, and stops, naming the file, if one does.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

SKIP_SUFFIXES = {".html", ".safetensors", ".bin", ".pt", ".pth", ".gguf", ".tmp"}
SKIP_DIRS = {"data", "model", "checkpoints"}
TEXT_LIMIT = 24  # a saved string longer than this may be an example's text
PACKED = "_packed_keys"  # a packed rationale row: its original keys, in order
AT = "_rationale_at"  # ... and where its rationale words stand in its words


ARCHIVE_SUFFIX = ".tar.xz"
# Keys added after a state was saved, with the value that gives that run's behaviour back where its
# saved config lacks them (a default that changed would otherwise change its prompts on restore).
BEFORE_KEY = {("teacher", "demonstrations"): "random"}  # 2026-12-06: balanced became the default


def archive_of(state_dir: Path) -> Path:
    return state_dir.with_name(state_dir.name + ARCHIVE_SUFFIX)


def pack(state_dir: Path) -> Path:
    """``state_dir`` as one archive beside it (the same bytes for the same files: sorted names,
    no owners or times), written under a temporary name and renamed; the folder is removed."""
    import tarfile

    archive = archive_of(state_dir)
    tmp = archive.with_name(archive.name + ".tmp")

    def plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        info.mode = 0o755 if info.isdir() else 0o644
        return info

    with tarfile.open(tmp, "w:xz", preset=9) as tar:
        for path in [state_dir, *sorted(state_dir.rglob("*"))]:
            tar.add(path, arcname=str(Path(state_dir.name) / path.relative_to(state_dir)), recursive=False,
                    filter=plain)
    os.replace(tmp, archive)
    shutil.rmtree(state_dir)
    return archive


def unpack(archive: Path, into: Path) -> Path:
    """The archive's folder, extracted under ``into`` (replacing an older extraction); returns it."""
    import tarfile

    name = archive.name.removesuffix(ARCHIVE_SUFFIX)
    tmp = into / f".{name}.unpacking"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(archive, "r:xz") as tar:
        tar.extractall(tmp, filter="data")  # plain files and folders only, nothing outside tmp
    target = into / name
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp / name, target)
    shutil.rmtree(tmp)
    return target


def state_folder(dataset: str, state: str | Path = "benchmarks/state", cache: str | Path = "runs/state") -> Path:
    """The saved run folder of ``dataset``: the folder itself where one is there, else its archive
    unpacked into ``cache`` (again only when the archive is newer than the extraction)."""
    folder = Path(state) / dataset
    if folder.is_dir():
        return folder
    archive = archive_of(folder)
    if not archive.is_file():
        raise SystemExit(f"{archive}: no saved state for {dataset}")
    target = Path(cache) / dataset
    stamp = Path(cache) / f"{dataset}.unpacked"
    if not target.is_dir() or not stamp.is_file() or stamp.read_text() != str(archive.stat().st_mtime_ns):
        unpack(archive, Path(cache))
        stamp.write_text(str(archive.stat().st_mtime_ns))
    return target


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def skipped(rel: Path) -> bool:
    """Whether ``rel`` (a path inside the run folder) stays behind; hidden names are the temporary
    files and folders of writes in progress (renamed into place when complete)."""
    return (rel.suffix in SKIP_SUFFIXES or any(p in SKIP_DIRS or p.startswith("checkpoint") for p in rel.parts[:-1])
            or rel.name.startswith("checkpoint") or any(p.startswith(".") for p in rel.parts))


def pack_row(row: dict[str, Any], where: str = "") -> dict[str, Any]:
    """A row without dataset text: rationale rows keep scores, offsets and their prompt's hash;
    faithfulness rows drop their word lists; prediction rows keep a long answer (an option's text,
    which may be the dataset's) as its hash only; other rows are returned as they are."""
    if "prompt" in row and "words" in row:
        out = {k: v for k, v in row.items() if k not in ("prompt", "words", "rationale_words", "rationale")}
        out["prompt_sha256"] = _sha(str(row["prompt"]))
        out["words"] = [[score, start, end] for _, score, start, end in row["words"]]
        out[AT] = rationale_at(row, where)  # stops, naming the row, where restore could not
        out[PACKED] = list(row)
        return out
    if "comprehensiveness" in row:
        return {k: v for k, v in row.items() if k not in ("rationale", "random")}
    if {"id", "prediction", "correct"} <= set(row):  # the report reads only id and correct
        out = dict(row)
        for key in ("prediction", "gold"):
            if isinstance(row.get(key), str) and len(row[key]) > TEXT_LIMIT:
                out[key], out[f"{key}_sha256"] = None, _sha(row[key])
        return out
    return row


def unpack_row(row: dict[str, Any], prompt: str | None, rationale_cfg: Any, where: str) -> dict[str, Any]:
    """The rationale row that :func:`pack_row` packed, from ``prompt`` (rendered again)."""
    if PACKED not in row:
        return row
    from saliency_distill.rationale.extract import reselect_row

    if prompt is None or _sha(prompt) != row["prompt_sha256"]:
        raise SystemExit(f"{where}: example {row['id']}: its prompt is not the one it was attributed with "
                         "(another prepared split or teacher prompt); run `prepare` with the study's config")
    full = {**row, "prompt": prompt, "words": [[prompt[s:e], sc, s, e] for sc, s, e in row["words"]]}
    if AT in row:  # the words chosen, by position
        chosen = [full["words"][i][0] for i in row[AT]]
        full = {**full, "rationale_words": chosen, "rationale": " ".join(chosen)}
    else:  # saved before positions were kept: chosen again (the saves of then checked that this gave them back)
        full = {**full, **{k: v for k, v in reselect_row(full, rationale_cfg).items() if k.startswith("rationale")}}
    return {key: full[key] for key in row[PACKED]}


def rationale_at(row: dict[str, Any], where: str = "") -> list[int]:
    """Where each of the row's rationale words stands in its ``words`` (the first word of that
    text). Choosing again from the scores is not enough: a store keeps its scores rounded, and
    words whose scores round to the same value may come back in another order."""
    first: dict[str, int] = {}
    for i, word in enumerate(row["words"]):
        first.setdefault(word[0], i)
    missing = [w for w in row.get("rationale_words") or [] if w not in first]
    if missing or row.get("rationale") != " ".join(row.get("rationale_words") or []):
        raise SystemExit(f"{where}: example {row['id']}: its rationale is not made of its own words "
                         f"({missing or row.get('rationale')!r}); restore could not make it again")
    return [first[w] for w in row.get("rationale_words") or []]


def _rows(path: Path) -> list[dict[str, Any]]:
    """The file's complete rows (a last line that a running job is still writing is left out)."""
    lines = path.read_text(encoding="utf-8").split("\n")[:-1]
    return [json.loads(line) for line in lines if line.strip()]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _dump(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def example_texts(examples: list[Any], longer_than: int = TEXT_LIMIT) -> list[str]:
    """The examples' own long strings (fields, explanations): none may appear in a saved file."""
    out = []
    for ex in examples:
        values = [*ex.fields.values(), ex.human_rationale, ex.llm_rationale]
        out += [v for v in values if isinstance(v, str) and len(v) > longer_than]
    return out


def save(run_dir: Path, state_dir: Path, texts: list[str]) -> int:
    """Copy ``run_dir`` into ``state_dir`` as described above; returns the number of files. Two
    saves of one run folder (a periodic one and the end of a job) take turns: a lock file beside
    the run folder, not in the committed state."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(run_dir.parent / f".{run_dir.name}.save.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _save_locked(run_dir, state_dir, texts)


def _save_locked(run_dir: Path, state_dir: Path, texts: list[str]) -> int:
    tmp = state_dir.with_name(state_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        n = _save_files(run_dir, tmp, texts)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # no half-written state
        raise
    old = state_dir.with_name(state_dir.name + ".old")
    if state_dir.exists():
        os.replace(state_dir, old)
    os.replace(tmp, state_dir)
    shutil.rmtree(old, ignore_errors=True)
    return n


def _save_files(run_dir: Path, tmp: Path, texts: list[str]) -> int:
    n = 0
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(run_dir)
        if skipped(rel):
            continue
        try:
            if path.suffix == ".jsonl":
                text = _dump([pack_row(r, str(path)) for r in _rows(path)])
            else:
                text = path.read_text(encoding="utf-8")
        except FileNotFoundError:  # replaced or removed while the job runs: the next save takes what follows
            continue
        for t in texts:
            if t in text:
                raise SystemExit(f"{path}: holds an example's text ({t[:40]!r}...); not saved")
        _write(tmp / rel, text)
        n += 1
    return n


def restore(state_dir: Path, run_dir: Path, prompts: dict[str, str]) -> int:
    """Put ``state_dir`` back into ``run_dir`` (files already there are left alone: they are as new
    or newer); ``prompts``: example id -> the teacher's prompt. Returns the number of files written."""
    from saliency_distill.config import build
    from saliency_distill.rationale.extract import RationaleConfig

    n = 0
    for path in sorted(p for p in state_dir.rglob("*") if p.is_file()):
        target = run_dir / path.relative_to(state_dir)
        if target.exists():
            continue
        if path.suffix == ".jsonl":
            rows = _rows(path)
            header = rows[0] if rows and rows[0].get("kind") == "header" else {}
            cfg = build(RationaleConfig, header.get("rationale") or {}, prefix="rationale.")
            text = _dump([unpack_row(r, prompts.get(r.get("id", "")), cfg, str(path)) for r in rows])
        else:
            text = path.read_text(encoding="utf-8")
        tmp = target.with_name(target.name + ".tmp")
        _write(tmp, text)
        os.replace(tmp, target)
        n += 1
    return n


def teacher_prompts(cfg: Any) -> dict[str, str]:
    """Example id -> the teacher's prompt under ``cfg``, over every prepared split."""
    from saliency_distill.experiment import prepare_stage
    from saliency_distill.teacher.answer import make_prompter

    splits = prepare_stage(cfg)
    tokenizer = None
    if cfg.teacher.chat:  # only a chat prompt needs the teacher's tokenizer
        from transformers import AutoTokenizer

        from saliency_distill.models import resolve

        tokenizer = AutoTokenizer.from_pretrained(resolve(cfg.teacher.model.name)[1])
    prompter = make_prompter(cfg.task, cfg.teacher, splits["train"], tokenizer)
    return {ex.id: prompter.render(ex).text for examples in splits.values() for ex in examples}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("action", choices=["save", "restore", "pack"])
    ap.add_argument("--dataset", default=None, help="a study dataset: cqa, svamp, anli1, esnli")
    ap.add_argument("--run-dir", default=None,
                    help="instead of a study dataset, any run folder (e.g. runs/pool_study/esnli); its state is named "
                         "by --name")
    ap.add_argument("--name", default=None, help="the saved state's name with --run-dir (e.g. pool_esnli)")
    ap.add_argument("--state", default="benchmarks/state", help="the committed folder (one archive per dataset)")
    ap.add_argument("--train", type=int, default=None, help="as given to study.py (svamp: 720)")
    args = ap.parse_args(argv)
    if (args.dataset is None) == (args.run_dir is None and args.name is None):
        ap.error("give --dataset (a study's folder) or --run-dir / --name (any run folder)")
    name = args.dataset or args.name or Path(args.run_dir).name
    state_dir = Path(args.state) / name
    if args.action == "pack":
        print(f"packed {state_dir} into {pack(state_dir)}")
        return
    if args.action == "restore":  # the run's config travels in its state (a study's is rebuilt where it does not)
        folder = state_folder(name, args.state)
        saved = folder / "config.yaml"
        cfg = (saved_config(saved, [f"run_dir={args.run_dir}"] if args.run_dir else []) if saved.is_file()
               else run_config(args))
        print(f"restored {restore(folder, Path(cfg.run_dir), teacher_prompts(cfg))} files of {folder} to {cfg.run_dir}")
        return
    from saliency_distill.experiment import prepare_stage

    cfg = run_config(args)
    examples = [ex for split in prepare_stage(cfg).values() for ex in split]
    n = save(Path(cfg.run_dir), state_dir, example_texts(examples))
    print(f"saved {n} files of {cfg.run_dir} to {pack(state_dir)}")


def saved_config(path: Path, overrides: list[str]) -> Any:
    """The run config saved at ``path`` as that run had it: keys it lacks that :data:`BEFORE_KEY`
    names take their value from before they existed, then ``overrides`` apply."""
    import yaml

    from saliency_distill.config import apply_overrides, build
    from saliency_distill.experiment import ExperimentConfig

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for (section, key), old in BEFORE_KEY.items():
        if isinstance(data.get(section), dict):
            data[section].setdefault(key, old)
    return build(ExperimentConfig, apply_overrides(data, overrides))


def run_config(args: argparse.Namespace) -> Any:
    """The config of the run folder to save or restore: a study dataset's, or the one in --run-dir."""
    if args.run_dir is not None:
        from saliency_distill.config import load_config
        from saliency_distill.experiment import ExperimentConfig

        return load_config(ExperimentConfig, Path(args.run_dir) / "config.yaml", [f"run_dir={args.run_dir}"])
    sys.path.insert(0, str(Path(__file__).parent))
    from study import study_config

    study_args = argparse.Namespace(dataset=args.dataset, data="../shared/data/dsbs", validation=200, seeds="0,1,2",
                                    faithfulness_examples=200, set=[],
                                    train=args.train or (720 if args.dataset == "svamp" else 1000))
    return study_config(study_args)


if __name__ == "__main__":
    main()
