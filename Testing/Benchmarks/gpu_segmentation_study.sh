#!/bin/bash
# Issue 15, item 5: the paper's 2-D patch CNN and a 3-D SegResNet trained side by side on the same
# simulated cases, on one GPU, each time-boxed. Dice on the real cases is then measured on the CPU
# with `idh-predictor evaluate-segmentation ../shared/realdata --model OUT/seg2d|seg3d`. Both train with
# the real-world tumour appearance randomisation (train-segmentation's default --tumour-appearance 0.5).
# Environment: OUT (bundles and logs), CASES, MINUTES (training wall time per network), STEPS,
# EPOCHS, PATCHES (2-D patches per epoch), WORKERS. A bare GPU machine lacks SimpleITK, MONAI,
# nibabel and nilearn's MNI maps: a .whl folder with wheels and/or site-*.tar.xz archives (unpacked
# site-packages) is installed first when present.
set -euo pipefail
OUT=${OUT:-/tmp/gpu-study}; CASES=${CASES:-48}; MINUTES=${MINUTES:-5}; STEPS=${STEPS:-4000}
EPOCHS=${EPOCHS:-10}; PATCHES=${PATCHES:-777600}; WORKERS=${WORKERS:-16}
mkdir -p "$OUT"
if [ -d .whl ]; then
  mkdir -p /tmp/site
  for f in .whl/*.tar.xz; do [ -e "$f" ] && tar -xJf "$f" -C /tmp/site; done
  for f in .whl/*.whl; do [ -e "$f" ] && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site "$f"; done
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
idh() { python3 -c "import sys; from IDHPredictorLib.cli import main; sys.exit(main(sys.argv[1:]))" "$@"; }
nvidia-smi -L 2>/dev/null || echo "no GPU"
start=$(date +%s)
idh phantom --out /tmp/gpu-study-train --cases "$CASES" --seed 1000 --workers "$WORKERS" 2>&1 | tr '\r' '\n' | tail -2
echo "phantom: $(( $(date +%s) - start )) s"
OMP_NUM_THREADS=12 idh train-segmentation /tmp/gpu-study-train --out "$OUT/seg2d" --epochs "$EPOCHS" \
  --patches-per-epoch "$PATCHES" --max-minutes "$MINUTES" > "$OUT/seg2d.log" 2>&1 &
OMP_NUM_THREADS=4 idh train-segmentation /tmp/gpu-study-train --out "$OUT/seg3d" --network segresnet \
  --steps "$STEPS" --max-minutes "$MINUTES" > "$OUT/seg3d.log" 2>&1 &
wait -n || echo "a training run failed"
wait -n || echo "a training run failed"
echo "total: $(( $(date +%s) - start )) s"
for f in "$OUT"/seg2d.log "$OUT"/seg3d.log; do echo "== $f"; tr '\r' '\n' < "$f" | grep -v "^$" | tail -6; done
