"""``python -m saliency_distill``: the same command line as ``saliency-distill``."""

from .cli.main import main

raise SystemExit(main())
