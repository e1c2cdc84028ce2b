#!/usr/bin/env bash
# Creates .venv with the CPU build of torch and sptrace's test and plot extras.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
# The CPU wheel is pinned explicitly: an open-ended torch pulls a multi-GB CUDA build.
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e '.[test,plots]'
# mup (the reference μP library, for agreement tests) depends on torchvision, which breaks beside
# the CPU torch: install it without dependencies, plus the one module it imports that we lack.
.venv/bin/pip install -q --no-deps mup
.venv/bin/pip install -q pyyaml
