#!/usr/bin/env bash
# densebox on a CUDA machine, in one prepared run (about 5 minutes, at most 9.5): build the
# C++/CUDA extension, run tests/test_ops.py (its CUDA tests run there), run benchmarks/ops.py,
# and the end-to-end SSD300 benchmark against torchvision (batch 1 and 32, fp32 and AMP).
#
# Meant for an offline GPU machine whose Python (3.12) already has torch, torchvision,
# pytest and ninja. densebox.ops needs nothing else; the end-to-end benchmark and the
# "post-processing never syncs" test need mmengine & co: put the wheels that
# ../shared/tools/device_wheels.sh downloads in a .whl/ folder of the repository root and
# they are installed into a temporary folder first, as that script describes.
#
#   bash tools/gpu_check.sh            # results in $OUT if set, else ./gpu_check_out
#
# Files written (flat, at most 8): env.txt, build.log, steps.txt (every step's output),
# bench_ops.json, e2e.json, summary.txt. Exit status 0 only if every step passed.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-$PWD/gpu_check_out}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export DENSEBOX_OPS_CACHE=${DENSEBOX_OPS_CACHE:-/tmp/densebox_ops_cache}
unset DENSEBOX_OPS

if compgen -G ".whl/*.whl" >/dev/null; then
  site=$(mktemp -d)
  "$py" -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl \
    && export PYTHONPATH=$site:$PYTHONPATH || echo "wheel install failed; going on" >&2
fi

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  "$py" -c "import sys, torch, torchvision; print(sys.version)
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu', torch.cuda.is_available())
print('torchvision', torchvision.__version__)"
  command -v nvcc ninja
  nproc
} >"$out/env.txt" 2>&1
cat "$out/env.txt"

step() {  # name, timeout seconds, command...
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  echo "===== $name: $*" >>"$out/steps.txt"
  timeout "$limit" "$@" 2>&1 | tee -a "$out/steps.txt"
  local rc=${PIPESTATUS[0]}
  echo "$name: exit $rc after $((SECONDS - start)) s" | tee -a "$out/summary.txt"
  return "$rc"
}

: >"$out/summary.txt"
: >"$out/steps.txt"
status=0
step build 150 "$py" -m densebox.ops build || status=1
cp "$DENSEBOX_OPS_CACHE"/*cuda*/build.log "$out/build.log" 2>/dev/null || true
step test_ops 150 "$py" -m pytest tests/test_ops.py -q -rs -p no:cacheprovider || status=1
step bench_ops 120 "$py" benchmarks/ops.py --out "$out/bench_ops.json" || status=1
if "$py" -c "import mmengine, mmcv, albumentations" 2>/dev/null; then
  step bench_e2e 150 "$py" tools/benchmark.py inference --device cuda --batch-sizes 1 32 \
    --amp --iters 3 --repeats 3 --out "$out/e2e.json" || status=1
else
  echo "bench_e2e: not run, mmengine / mmcv / albumentations missing (no .whl/ wheels)" \
    | tee -a "$out/summary.txt"
  status=1
fi
echo "overall: $([ $status = 0 ] && echo PASS || echo FAIL)" | tee -a "$out/summary.txt"
exit $status
