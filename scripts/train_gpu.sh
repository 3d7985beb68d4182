#!/usr/bin/env bash
# Pretrain (masked LM on the training repositories' code) and fine-tune the merge classifier on a
# CUDA machine whose Python already has torch, transformers, tokenizers, click and rich (no
# install: the package is put on PYTHONPATH through a shim of its namespace mapping).
#   bash scripts/train_gpu.sh CORPUS.npy TRAIN.npz VAL.npz OUT_DIR [PRETRAIN_MIN] [EPOCHS] [FT_MIN]
# With PRETRAIN_MIN 0 an existing OUT_DIR/pretrained is fine-tuned again. Environment: HIDDEN,
# LAYERS, HEADS (body size; 192, 4, 4), SEED, LR, MIRROR, CKPT_EVERY, EMA (a decay: splice train --ema).
# The CPU-only equivalent is in docs/MODEL.md; nothing in Splice needs a GPU.
set -euo pipefail
corpus=$1 train=$2 val=$3 out=$4 pre_min=${5:-4} epochs=${6:-6} ft_min=${7:-5}
shim=$(mktemp -d)
mkdir -p "$shim/splice"
cp -r src/splice/. "$shim/splice/"
for d in resolver models lsp hooks; do ln -sfn "$PWD/$d" "$shim/splice/$d"; done
export PYTHONPATH=$shim PYTHONUNBUFFERED=1
[ "$pre_min" = 0 ] || python3 -m splice.models.training.pretrain train --corpus "$corpus" --out "$out/pretrained" \
    --hidden "${HIDDEN:-192}" --layers "${LAYERS:-4}" --heads "${HEADS:-4}" --seq-len 192 \
    --batch-size 256 --steps 20000 --minutes "$pre_min" --device cuda
python3 -m splice train --train-npz "$train" --val-npz "$val" --out "$out/model" \
    --init "$out/pretrained" --device cuda --bf16 --epochs "$epochs" --batch-size 64 \
    --lr "${LR:-3e-4}" --max-val 0 --checkpoint-every "${CKPT_EVERY:-100000}" --no-class-weights \
    --minutes "$ft_min" --mirror "${MIRROR:-0}" --seed "${SEED:-0}" ${EMA:+--ema "$EMA"}
