"""The README's test command is what CI runs; the README's main command names a real config."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    readme = (ROOT / "README.md").read_text()
    assert ci == ["bash scripts/setup.sh --models && .venv/bin/ruff check && .venv/bin/python -m pytest -q"]
    assert ci[0] in readme


def test_readme_main_command_config_exists():
    from saliency_distill.config import load_config
    from saliency_distill.experiment import ExperimentConfig

    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/setup.sh --teacher-1.5b && .venv/bin/saliency-distill run configs/demo.yaml" in readme
    cfg = load_config(ExperimentConfig, ROOT / "configs" / "demo.yaml")
    # the demo's data comes from a package registry and its teacher from the packages that
    # setup.sh --teacher-1.5b installs
    assert cfg.task.name == "snli" and cfg.task.path is None
    assert cfg.teacher.model.name == "qwen2.5-coder-1.5b-instruct"


def test_model_requirements_are_hash_pinned():
    for name in ("models.txt", "models-1.5b.txt"):
        text = (ROOT / "requirements" / name).read_text()
        reqs = [line for line in text.splitlines() if "==" in line and not line.startswith("#")]
        hashes = [line for line in text.splitlines() if "--hash=sha256:" in line]
        assert reqs and len(reqs) == len(hashes)


def test_every_shipped_config_is_valid():
    from saliency_distill.config import load_config
    from saliency_distill.experiment import ExperimentConfig

    names = sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))
    assert names == ["anli1", "cqa", "demo", "esnli", "socialiqa", "svamp"]
    for name in names:
        cfg = load_config(ExperimentConfig, ROOT / "configs" / f"{name}.yaml")
        assert cfg.run_dir == f"runs/{name}"
        if name not in ("demo", "socialiqa"):
            assert cfg.task.name == name and cfg.task.path == f"../shared/data/dsbs/{name}"
            assert "llm-rationale" in cfg.student.modes


def test_readme_is_short_and_its_links_and_the_docs_links_resolve():
    import re

    readme = ROOT / "README.md"
    assert readme.stat().st_size <= 8192, "the README is the pitch and the commands; details go to docs/"
    for doc in [readme, *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if not target.startswith(("http://", "https://")):
                assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"
