"""`accelerate launch` with 2 processes on CPU (gloo): training runs data-parallel, attribution
gives each process its shard, and the rationale store merges them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_two_process_run(tmp_path, tiny_model_dirs):
    accelerate = Path(sys.executable).with_name("accelerate")
    run = tmp_path / "run"
    cmd = [
        str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29533",
        "-m", "saliency_distill.cli.main", "-q", "run", f"run_dir={run}", "task.name=quartz",
        f"task.path={_quartz_file(tmp_path)}", "task.max_test=6", f"teacher.model.name={tiny_model_dirs['qwen2']}",
        "teacher.train.max_steps=2", "teacher.train.bf16=false", "teacher.train.progress_bar=false",
        "progress=false", f"student.model.name={tiny_model_dirs['llama']}", "student.modes=[standard,saliency]",
        "student.train.max_steps=2", "student.train.bf16=false", "student.train.progress_bar=false",
        "student.eval.max_new_tokens=2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # 2 CPU processes, also on a GPU machine
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Only the main process prints.
    assert proc.stdout.count("report:") == 1

    shards = [run / "rationales" / f"train.rank{r}.jsonl" for r in (0, 1)]
    shard_ids = [[json.loads(line)["id"] for line in p.read_text().splitlines()[1:]] for p in shards]
    assert all(shard_ids) and not set(shard_ids[0]) & set(shard_ids[1])
    merged = [json.loads(line)["id"] for line in (run / "rationales" / "train.jsonl").read_text().splitlines()[1:]]
    train_ids = [json.loads(line)["id"] for line in (run / "data" / "train.jsonl").read_text().splitlines()]
    assert merged == train_ids  # every example once, in data order
    assert sorted(shard_ids[0] + shard_ids[1]) == sorted(train_ids)

    for mode in ("standard", "saliency"):
        metrics = json.loads((run / "students" / mode / "seed0" / "train_metrics.json").read_text())
        assert metrics["world_size"] == 2
        assert json.loads((run / "students" / mode / "seed0" / "result.json").read_text())["n"] == 6
    teacher = json.loads((run / "teacher" / "finetune" / "train_metrics.json").read_text())
    assert teacher["world_size"] == 2


def _quartz_file(tmp_path: Path) -> Path:
    rows = []
    for i in range(30):
        user = f"Eric adds {i} resistors to the circuit. The resistance\n\n A: increases\n B: decreases"
        rows.append({"input": [{"role": "user", "content": user}], "ideal": "AB"[i % 2]})
    path = tmp_path / "quartz.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
