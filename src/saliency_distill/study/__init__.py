"""Studies built on the pipeline's stages: the data-efficiency curve (and, later, tuning)."""

from .curve import curve_points, curve_table, nested_subsets, run_curve

__all__ = ["curve_points", "curve_table", "nested_subsets", "run_curve"]
