#!/usr/bin/env bash
# Wheels that `make gpu-check` needs on an offline GPU node whose Python already holds torch, numpy,
# scipy, pillow, tqdm, safetensors, huggingface_hub and transformers (a PyTorch image such as NGC's),
# but not the rest of this project's stack. Run it here, where PyPI is reachable:
#
#     bash bench/gpu_wheels.sh [DIR=.whl] [PYTHON_VERSION=3.12]
#
# then carry DIR to the node and run there, from the repository's root:
#
#     python3 -m pip install -q --no-index --no-deps --target /tmp/site DIR/*.whl
#     PYTHONPATH=/tmp/site:$PWD make gpu-check GPU_PYTHON=python3
#
# Used on an H200 image (torch 2.11, Python 3.12) on 2026-12-04. DeepSpeed ships only a source archive:
# it is built here without its compiled ops (the check uses torch's Adam), which gives a pure-Python wheel.
set -euo pipefail
dir=${1:-.whl}
py=${2:-3.12}
here=$(cd "$(dirname "$0")/.." && pwd)
venv_python="$here/.venv/bin/python"
mkdir -p "$dir"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_14_x86_64 \
         manylinux_2_5_x86_64 manylinux1_x86_64; do platforms+=(--platform "$p"); done
# the check's imports beyond a PyTorch image (found by running it with only that image's packages)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
    "${platforms[@]}" -d "$dir" \
    omegaconf==2.4.0 antlr4-python3-runtime==4.13.2 hjson==3.1.0 pydantic==2.14.4 pydantic-core==2.50.5 \
    annotated-types==0.8.0 typing-inspection==0.4.5 mosaicml-streaming==0.13.0 catalogue==2.0.10 brotli==1.2.1 \
    cramjam==2.14.0 python-snappy==0.7.3 zstd==1.5.7.2 torch-fidelity==0.4.0
DS_BUILD_OPS=0 "$venv_python" -m pip wheel -q --no-deps --no-build-isolation deepspeed==0.19.8 -w "$dir"
ls "$dir"
