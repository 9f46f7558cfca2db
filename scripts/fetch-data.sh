#!/usr/bin/env bash
# Makes Fashion-MNIST available without a download where the OS packages it (Debian:
# dataset-fashion-mnist). Elsewhere densekit downloads it itself, checksum-verified.
set -uo pipefail
dir=/usr/share/datasets/fashion-mnist
if [ -f "$dir/train-images-idx3-ubyte.gz" ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian package dataset-fashion-mnist ..."
  (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 ||
   { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; }) ||
   echo "could not install dataset-fashion-mnist; densekit will try to download the files"
fi
exit 0
