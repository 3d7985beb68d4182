#!/usr/bin/env bash
# Pretrain one body (masked LM), then fine-tune it with several seeds at once on one CUDA GPU;
# the run that produced the shipped network (models/shipped/MODEL_CARD.md). Like train_gpu.sh it
# needs a Python with torch, transformers, tokenizers, click and rich, and installs nothing.
#   bash scripts/train_gpu_seeds.sh CORPUS.npy[.zst] TRAIN.npz VAL.npz OUT_DIR [SEEDS...]
# Environment: HIDDEN, LAYERS, HEADS (256, 4, 4), PRE and FT (minutes: 1.5 and 4.5), LR (1e-4),
# EMA (a decay for splice train --ema; unset: none). Writes OUT_DIR/pretrained, OUT_DIR/S<seed>
# (the best checkpoint by piece validation accuracy) and OUT_DIR/S<seed>.log.
set -uo pipefail
corpus=$1 train=$2 val=$3 out=$4
shift 4
seeds=${*:-0 1 2}
mkdir -p "$out"
if [[ $corpus == *.zst ]]; then  # zstd -19 --long=27 shrinks the corpus about 9 times
    zstd -d --long=27 -q -f "$corpus" -o "$out/corpus.npy" || exit 1
    corpus=$out/corpus.npy
fi
shim=$(mktemp -d)
mkdir -p "$shim/splice"
cp -r src/splice/. "$shim/splice/"
for d in resolver models lsp hooks; do ln -sfn "$PWD/$d" "$shim/splice/$d"; done
export PYTHONPATH=$shim PYTHONUNBUFFERED=1
python3 -m splice.models.training.pretrain train --corpus "$corpus" --out "$out/pretrained" \
    --hidden "${HIDDEN:-256}" --layers "${LAYERS:-4}" --heads "${HEADS:-4}" --seq-len 192 \
    --batch-size 256 --steps 20000 --minutes "${PRE:-1.5}" --device cuda > "$out/pretrain.log" 2>&1 \
    || { cat "$out/pretrain.log"; exit 1; }
tail -n 1 "$out/pretrain.log"
for seed in $seeds; do
    python3 -m splice train --train-npz "$train" --val-npz "$val" --out "$out/S$seed" \
        --init "$out/pretrained" --device cuda --bf16 --epochs 3 --batch-size 64 \
        --lr "${LR:-1e-4}" --max-val 0 --checkpoint-every 300 --no-class-weights \
        --minutes "${FT:-4.5}" --mirror 0.5 --seed "$seed" ${EMA:+--ema "$EMA"} \
        > "$out/S$seed.log" 2>&1 &
done
wait
for seed in $seeds; do tail -n 1 "$out/S$seed.log"; done
