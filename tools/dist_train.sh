#!/usr/bin/env bash
# Multi-GPU training on one machine with torchrun:
#   bash tools/dist_train.sh configs/ssd300_voc.py 8 [--amp ...]
# NNODES / NODE_RANK / MASTER_ADDR / PORT extend it to several machines.
set -e
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
cd "$(dirname "$0")/.."
python -m torch.distributed.run --nnodes="$NNODES" --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" --nproc_per_node="$GPUS" --master_port="$PORT" \
    tools/train.py "$CONFIG" --launcher pytorch "${@:3}"
