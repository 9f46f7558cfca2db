#!/bin/bash
# The measured fine-tuning case (docs/finetune.md): pretrain a densenet121-layout net (torchvision key names,
# blocks [2,2,2,2], k=12 so a CPU affords it) on Fashion-MNIST briefly,
# then fine-tune on the 8x8 digits (resized to 32x32) versus training from scratch, same time budget.
set -e
mkdir -p "${OUT:-/tmp/densekit-finetune}" && cd "${OUT:-/tmp/densekit-finetune}"

PY=${PYTHON:-python}
$PY - <<'PYEOF'
from densekit.data import load_dataset, TensorImageDataset
from densekit.data.packed import write_packed
from pathlib import Path
if not Path("fmnist/meta.json").exists():
    tr, te = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    write_packed({"train": tr, "test": TensorImageDataset(te.images[:1000], te.labels[:1000], te.classes)}, "fmnist", "fashion-mnist")
PYEOF
COMMON="--model densenet121 --model-arg block_config=[2,2,2,2] --model-arg growth_rate=12 --image-size 32 --batch-size 32 --val-split 0 --workers 0 --no-tensorboard --no-plots --out runs --quiet --json"
[ -f runs/pre/summary.json ] || $PY -m densekit train $COMMON --dataset packed:fmnist --time-budget 150s --name pre > pre.json
$PY -c "
import torch; from densekit.engine.checkpoint import load_checkpoint
p = load_checkpoint('runs/pre/checkpoints/last.pt'); torch.save(p['state_dict'], 'densenet121-fmnist.pth')"
$PY -m densekit train $COMMON --dataset digits --time-budget 45s --name scratch > scratch.json
$PY -m densekit train $COMMON --dataset digits --time-budget 45s --weights densenet121-fmnist.pth --name finetune > finetune.json
$PY -m densekit train $COMMON --dataset digits --time-budget 45s --weights densenet121-fmnist.pth --lr-backbone 0.1 --name finetune-lrb > finetune-lrb.json
for f in pre scratch finetune finetune-lrb; do $PY -c "import json; s=json.load(open('$f.json')); print('$f', s['dataset'], 'test top-1 %.2f%%' % (100*s['test_top1']), 'epochs', s['epochs'], 'steps', s['global_step'], 'duration %.0fs' % s['duration_s'])"; done
