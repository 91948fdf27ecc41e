#!/usr/bin/env bash
# The recipe table (python -m benchmarks.arms) and the 2D nuclei base model (experiment=nuclei-base) on one GPU
# machine in one call, as run through the device tool of our workplace (issue #14): the repo root is the
# working directory, DATA the folder with the dataset folders, OUT where the results go. Python packages
# the machine lacks come as wheels in .whl/ (hydra-core, omegaconf, antlr4, monai, roifile, zarr...).
#
#   DATA=.gpudata OUT=/tmp/out TABLE_MIN=0.6 BASE_MIN=5.5 STOP_AFTER=6.3 bash benchmarks/gpu_table.sh
set -u
DATA=${DATA:-../shared/data}
OUT=${OUT:-/tmp/gpu_table}
TABLE_MIN=${TABLE_MIN:-0.6}     # training budget per table run (minutes)
BASE_MIN=${BASE_MIN:-5.5}       # base model budget (minutes)
STOP_AFTER=${STOP_AFTER:-6.0}   # start no table run after this many minutes
JOBS=${JOBS:-8}
EXPERIMENTS=${EXPERIMENTS:-ctc-fluo-n2dh-gowt1,ctc-fluo-n2dl-hela,dsb2018-subset,mbm-bonemarrow-dots,plantseg-nuclei-3d-crops}
ARMS=${ARMS:-ours,peer,no_sep,no_ridges,uniform,no_elastic,norm_instance,select_pq}
SEEDS=${SEEDS:-ours=3,peer=3,1}
export OUT
mkdir -p "$OUT" /tmp/res /tmp/runs
if [ -z "${SKIP_WHEELS:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
nvidia-smi -L 2>/dev/null
python3 -c "import torch, lightning, hydra, monai, roifile, zarr, tifffile, scipy, skimage
import unet.cli.train, unet.data.datasets
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'lightning', lightning.__version__)" || exit 2

T0=$(date +%s)
# the base model: all of the budget, larger tiles, 3 loader workers
python3 train.py experiment=nuclei-base paths.data_root="$PWD/$DATA" paths.output_dir=/tmp/base \
  logger=csv "++trainer.max_time=$(python3 -c "s = round($BASE_MIN * 60); print(f'00:00:{s // 60:02d}:{s % 60:02d}')")" \
  data.num_workers=2 data.tile_memory_mib=2048 data.tiles_per_epoch=200 > /tmp/base.log 2>&1 &
BASE_PID=$!

# pack what has finished every 20 s (atomic: tar to a temporary name, then rename)
( while true; do
    tar czf "$OUT/.arms.tgz" -C /tmp/res . 2>/dev/null && mv "$OUT/.arms.tgz" "$OUT/arms.tgz"
    sleep 20
  done ) &
PACK_PID=$!

python3 -m benchmarks.arms --experiments "$EXPERIMENTS" --arms "$ARMS" --seeds "$SEEDS" --jobs "$JOBS" --threads 2 --minutes "$TABLE_MIN" --stop-after "$STOP_AFTER" \
  --data-root "$DATA" --out /tmp/res --runs /tmp/runs \
  --set data.num_workers=1 --set data.tile_memory_mib=1024 --set data.tiles_per_epoch=100 \
  > /tmp/arms.log 2>&1
echo "table done after $(( $(date +%s) - T0 )) s"
wait $BASE_PID
echo "base model done after $(( $(date +%s) - T0 )) s (exit $?)"
kill $PACK_PID 2>/dev/null
tar czf "$OUT/arms.tgz" -C /tmp/res .
python3 - <<'EOF'
import os
from pathlib import Path
from unet.checkpoint import slim_checkpoint
out = Path(os.environ.get("OUT", "/tmp/gpu_table"))
ck = Path("/tmp/base/checkpoints/best.ckpt")
if ck.exists():
    slim = slim_checkpoint(ck, out / "nuclei2d.ckpt")
    print("base model:", (out / "nuclei2d.ckpt").stat().st_size / 2**20, "MiB, epoch", slim["epoch"])
EOF
tail -c 200000 /tmp/base.log > "$OUT/base.log"
cp /tmp/base/*/metrics.csv "$OUT/base_metrics.csv" 2>/dev/null || find /tmp/base -name metrics.csv -exec cp {} "$OUT/base_metrics.csv" \;
( cd /tmp/runs && tar czf "$OUT/run_logs.tgz" ./*.log ) 2>/dev/null
cp /tmp/arms.log "$OUT/arms.log"
ls -la "$OUT"
