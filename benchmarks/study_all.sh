#!/usr/bin/env bash
# The whole study, one job at a time under nice, resumable across machines:
#
#   bash benchmarks/study_all.sh            restore saved state, then every dataset's main run, then the curves
#   STUDY_SAVE_EVERY=900 bash benchmarks/study_all.sh   ... and save the state every 15 minutes meanwhile
#
# Each dataset's run folder (runs/study/<dataset>) is first restored from benchmarks/state/<dataset>.tar.xz
# where a machine before this one saved it (benchmarks/study_state.py), and saved again after each
# job, so committing benchmarks/state and benchmarks/results/study* carries the study to the next
# machine. The main runs of all four datasets come before the two data-efficiency curves. On a CPU
# that emulates bfloat16 (AVX2 alone) it stops at once: study.py exits 3 and says why.
set -uo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-.venv/bin/python}"
jobs=("esnli" "cqa" "anli1" "svamp --train 720" "esnli --curve 0.1,0.25,0.5,1" "cqa --curve 0.1,0.25,0.5,1")

train_of() { [ "$1" = svamp ] && echo "--train 720"; }

save_all() {
  for ds in esnli cqa anli1 svamp; do
    [ -d "runs/study/$ds/teacher" ] || continue
    # shellcheck disable=SC2046
    nice -n 10 "$py" benchmarks/study_state.py save --dataset "$ds" $(train_of "$ds") || echo "study_all: saving $ds failed"
  done
}

for ds in esnli cqa anli1 svamp; do
  if [ -d "benchmarks/state/$ds" ] || [ -f "benchmarks/state/$ds.tar.xz" ]; then
    # shellcheck disable=SC2046
    "$py" benchmarks/study_state.py restore --dataset "$ds" $(train_of "$ds") || exit 1
  fi
done

saver=""
if [ -n "${STUDY_SAVE_EVERY:-}" ]; then
  (while sleep "$STUDY_SAVE_EVERY"; do save_all; done) &
  saver=$!
  trap 'kill $saver 2>/dev/null' EXIT
fi

for job in "${jobs[@]}"; do
  echo "=== $(date -u +%FT%T) start $job"
  # shellcheck disable=SC2086
  nice -n 5 "$py" benchmarks/study.py --dataset $job
  rc=$?
  [ "$rc" = 3 ] && exit 3  # this machine emulates bfloat16: no job would get anywhere (study.py says so)
  [ "$rc" = 0 ] || echo "=== $(date -u +%FT%T) FAILED $job"
  save_all
  echo "=== $(date -u +%FT%T) end $job"
done
