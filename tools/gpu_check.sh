#!/usr/bin/env bash
# densebox on a CUDA machine, in one prepared call of at most GPU_CHECK_BUDGET seconds
# (default 450: under 8 minutes, so a second try fits in a 15-minute device budget).
#
# Order: what the CUDA toolkit looks like (CUDA home, nvcc, libcudart), the C++/CUDA
# extension build, the CUDA tests (tests/test_ops.py -k cuda: NMS, batched / segmented NMS
# incl. the exact-IoU case, RoIAlign, SSD post-processing under the sync checker), then the
# GPU suite: benchmarks/ops.py on CUDA, SSD300 end to end against torchvision (batch 1 and
# 32, fp32 and AMP), the SSD300 training step against torchvision (batch 32, fp32 and AMP).
# Every step has its own time limit, cut to what is left of the budget; a step that no
# longer fits is skipped with a message.
#
# Meant for an offline GPU machine whose Python (3.12) already has torch, torchvision,
# pytest and ninja. densebox.ops needs nothing else. The end-to-end and training
# benchmarks and the no-sync test need mmengine & co: put the wheels that
# ../shared/tools/device_wheels.sh downloads in the repository's .whl/ folder (git-ignored:
# the run must carry it, e.g. carry=[".whl"]) and they are installed into a temporary
# folder first. Without them those steps are SKIPPED with a message; the check still
# passes if everything that ran passed.
#
#   bash tools/gpu_check.sh          # results in $OUT if set, else ./gpu_check_out
#   GPU_CHECK_DRY_RUN=1 bash tools/gpu_check.sh   # print the plan (steps, limits), run nothing
#
# Files written (flat): env.txt, build.log, steps.txt (every step's output), summary.txt,
# bench_ops.json, e2e.json, train.json. Exit status 0 when no step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-$PWD/gpu_check_out}
mkdir -p "$out"
py=${PYTHON:-python3}
dry=${GPU_CHECK_DRY_RUN:-0}
budget=${GPU_CHECK_BUDGET:-450}
deadline=$((SECONDS + budget))
export PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export DENSEBOX_OPS_CACHE=${DENSEBOX_OPS_CACHE:-/tmp/densebox_ops_cache}
export DENSEBOX_CPU_CONV_CACHE=${DENSEBOX_CPU_CONV_CACHE:-off}
unset DENSEBOX_OPS

: >"$out/summary.txt"
: >"$out/steps.txt"
note() { echo "$*" | tee -a "$out/summary.txt"; }

# ---------------------------------------------------------------- wheels (optional)
if compgen -G ".whl/*.whl" >/dev/null; then
  site=$(mktemp -d)
  if "$py" -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl \
      >>"$out/steps.txt" 2>&1; then
    export PYTHONPATH=$site:$PYTHONPATH
    note "wheels: installed $(ls .whl/*.whl | wc -l) from .whl/"
  else
    note "wheels: pip install from .whl/ failed (see steps.txt); going on without them"
  fi
else
  note "wheels: no .whl/ folder carried; the steps that need mmengine run only if it is installed"
fi
has_mm=0
"$py" -c "import mmengine, mmcv, albumentations, pycocotools" 2>/dev/null && has_mm=1

# ---------------------------------------------------------------- environment
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  "$py" -c "import sys, torch, torchvision; print(sys.version)
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu', torch.cuda.is_available())
print('torchvision', torchvision.__version__)
from torch.utils import cpp_extension
print('torch CUDA_HOME guess:', cpp_extension.CUDA_HOME)
from densebox.ops import _ext
print('densebox CUDA home:', _ext.find_cuda_home())" 2>&1
  echo "CUDA_HOME=${CUDA_HOME:-} CUDA_PATH=${CUDA_PATH:-}"
  echo "nvcc on PATH: $(command -v nvcc || echo none)"
  command -v nvcc >/dev/null && nvcc --version 2>&1 | tail -2
  home=$("$py" -c "from densebox.ops import _ext; print(_ext.find_cuda_home() or '')" 2>/dev/null)
  if [ -n "$home" ]; then
    echo "in $home: nvcc $(ls "$home"/bin/nvcc 2>/dev/null || echo MISSING)," \
         "libcudart.so $(ls "$home"/lib64/libcudart.so "$home"/lib/libcudart.so 2>/dev/null | head -1 || true)"
    ls "$home"/lib64/libcudart.so* "$home"/lib/libcudart.so* 2>/dev/null | head -3
  fi
  echo "ninja: $(command -v ninja || echo none)"
  echo "mmengine & co importable: $has_mm"
  echo "cpus: $(nproc)"
} >"$out/env.txt" 2>&1
cat "$out/env.txt"

# ---------------------------------------------------------------- steps
status=0
step() {  # name, limit seconds, command...: run with min(limit, what is left - 10 s)
  local name=$1 limit=$2; shift 2
  local left=$((deadline - SECONDS - 10))
  if [ "$left" -lt 20 ]; then
    note "$name: SKIPPED, only ${left} s of the ${budget} s budget left"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "===== $name (limit ${limit} s): $*" >>"$out/steps.txt"
  if [ "$dry" = 1 ]; then
    note "$name: would run with a ${limit} s limit: $*"
    return 0
  fi
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee -a "$out/steps.txt"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" = 124 ]; then
    note "$name: TIMED OUT after $((SECONDS - start)) s (limit ${limit} s)"
  else
    note "$name: exit $rc after $((SECONDS - start)) s"
  fi
  [ "$rc" = 0 ] || status=1
  return 0
}
needs_mm() {  # name, limit, command...: run only with mmengine & co
  if [ "$has_mm" = 1 ]; then step "$@"; else
    note "$1: SKIPPED, mmengine / mmcv / albumentations / pycocotools missing (no usable .whl/)"
  fi
}

step build 150 "$py" -m densebox.ops build --cuda
cp "$DENSEBOX_OPS_CACHE"/*cuda*/build.log "$out/build.log" 2>/dev/null || true
# CUDA tests first: they are the check that the kernels are right at all
step test_cuda 120 "$py" -m pytest tests/test_ops.py -q -rs -p no:cacheprovider -k cuda
step bench_ops 75 "$py" benchmarks/ops.py --device cuda --out "$out/bench_ops.json"
needs_mm bench_e2e 120 "$py" tools/benchmark.py inference --device cuda --batch-sizes 1 32 \
  --amp --iters 3 --repeats 3 --out "$out/e2e.json"
needs_mm bench_train 100 "$py" tools/benchmark.py train --device cuda --batch-sizes 32 \
  --amp --iters 5 --repeats 3 --out "$out/train.json"
note "overall: $([ $status = 0 ] && echo PASS || echo FAIL) in $SECONDS s"
exit $status
