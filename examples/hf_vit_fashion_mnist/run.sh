#!/usr/bin/env bash
# Distil a tiny Hugging Face ViT (built from a config, no download) into a small CNN on Fashion-MNIST, through the
# CLI. Extra arguments go to both commands, e.g. ./run.sh --set train.epochs=1 --set data.train_subset=500
set -euo pipefail
here="$(dirname "$0")"
out="${OUT:-runs/examples}"
kdlab data fetch fashion-mnist
kdlab train "$here/vit_teacher.yaml" --out "$out/vit_teacher" "$@"
kdlab distill "$here/cnn_student.yaml" --out "$out/cnn_student" --set teacher.run="$out/vit_teacher" "$@"
kdlab eval "$out/cnn_student"
