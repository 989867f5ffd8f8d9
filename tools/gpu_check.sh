#!/usr/bin/env bash
# densebox.ops on a CUDA machine, in one prepared run (< 8 minutes): build the C++/CUDA
# extension, run tests/test_ops.py (its CUDA tests run there), run benchmarks/ops.py.
#
# Meant for an offline GPU machine whose Python (3.12) already has torch, torchvision,
# pytest and ninja. densebox.ops needs nothing else (no mmengine), so the wheels of
# ../shared/tools/device_wheels.sh are optional: when a .whl/ folder sits in the repository
# root they are installed into a temporary folder first, as that script describes.
#
#   bash tools/gpu_check.sh            # results in $OUT if set, else ./gpu_check_out
#
# Files written (flat, at most 8): env.txt, build.txt, build.log, test_ops.txt,
# bench_ops.txt, bench_ops.json, summary.txt. Exit status 0 only if every step passed.
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
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"
  local rc=${PIPESTATUS[0]}
  echo "$name: exit $rc after $((SECONDS - start)) s" | tee -a "$out/summary.txt"
  return "$rc"
}

: >"$out/summary.txt"
status=0
step build 240 "$py" -m densebox.ops build || status=1
cp "$DENSEBOX_OPS_CACHE"/*cuda*/build.log "$out/build.log" 2>/dev/null || true
step test_ops 180 "$py" -m pytest tests/test_ops.py -q -rs -p no:cacheprovider || status=1
step bench_ops 150 "$py" benchmarks/ops.py --out "$out/bench_ops.json" || status=1
echo "overall: $([ $status = 0 ] && echo PASS || echo FAIL)" | tee -a "$out/summary.txt"
exit $status
