from __future__ import annotations

import saliency_distill
import saliency_distill.data
import saliency_distill.models
import saliency_distill.teacher


def test_public_names_exist_and_are_unique():
    for module in (saliency_distill, saliency_distill.data, saliency_distill.models, saliency_distill.teacher):
        names = module.__all__
        assert len(names) == len(set(names)), f"duplicate names in {module.__name__}.__all__"
        for name in names:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_top_level_exports():
    assert set(saliency_distill.__all__) >= {"load_model", "ModelConfig", "TaskConfig", "prepare", "ExperimentConfig",
                                             "ConfigError", "DataError", "ModelError", "SaliencyDistillError"}
