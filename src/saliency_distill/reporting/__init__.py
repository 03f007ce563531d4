"""The report folder of an experiment: per-mode results table, accuracy plot, records, config."""

from .plot import accuracy_svg, write_svg
from .report import environment_info, write_report
from .table import aggregate, markdown_table, write_csv

__all__ = [
    "accuracy_svg",
    "aggregate",
    "environment_info",
    "markdown_table",
    "write_csv",
    "write_report",
    "write_svg",
]
