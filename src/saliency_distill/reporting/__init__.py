"""The report folder of an experiment: per-mode results table, accuracy plot, the significance of
each mode's difference from the baselines, records, config."""

from .plot import accuracy_svg, curve_svg, write_svg
from .report import environment_info, read_correctness, write_report
from .significance import PairedDifference, accuracy_interval, compare_modes, paired_bootstrap
from .table import aggregate, markdown_table, reference_levels, write_csv

__all__ = [
    "PairedDifference",
    "accuracy_interval",
    "accuracy_svg",
    "aggregate",
    "compare_modes",
    "curve_svg",
    "environment_info",
    "markdown_table",
    "reference_levels",
    "paired_bootstrap",
    "read_correctness",
    "write_csv",
    "write_report",
    "write_svg",
]
