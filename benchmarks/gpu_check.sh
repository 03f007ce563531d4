#!/usr/bin/env bash
# The GPU code path on tiny models: tests/test_gpu.py (every stage on CUDA against the CPU) and
# then the whole suite with `device: auto` putting every model on the GPU. Run from the repo root
# on a CUDA machine that has PyTorch; wheels in .devwheels/ (if present) are installed first for
# the packages such an image lacks or has in other versions. Writes env.txt, gpu.txt and suite.txt
# under $OUT (default /tmp/gpu_check).
set -uo pipefail
out=${OUT:-/tmp/gpu_check}
mkdir -p "$out"
export PYTHONPATH=$PWD/src
if compgen -G ".devwheels/*.whl" >/dev/null; then
    python3 -m pip install -q --no-deps --no-index --target /tmp/sd-deps .devwheels/*.whl
    export PYTHONPATH=/tmp/sd-deps:$PYTHONPATH
fi
{
    nvidia-smi -L
    python3 -c "import torch, transformers, accelerate, peft; print('python', __import__('sys').version.split()[0], \
'torch', torch.__version__, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__, \
'peft', peft.__version__, 'cuda', torch.cuda.is_available())"
} >"$out/env.txt" 2>&1
cat "$out/env.txt"
timeout "${GPU_TIMEOUT:-150}" python3 -m pytest -q -p no:cacheprovider -rf tests/test_gpu.py >"$out/gpu.txt" 2>&1
echo "test_gpu.py: exit $?"; tail -5 "$out/gpu.txt"
timeout "${SUITE_TIMEOUT:-300}" python3 -m pytest -q -p no:cacheprovider -rf -n 8 tests -k "not package_registry" >"$out/suite.txt" 2>&1
echo "whole suite on the GPU: exit $?"; tail -40 "$out/suite.txt"
