#!/bin/sh
# tests/deps.sh check|install - the Debian packages the build and tests need.
# One list, used by `make deps` and by the check that every build runs first.
PKGS="build-essential pkg-config libmsgpack-dev libarchive-dev libvips-dev libopenblas-dev
libutf8proc-dev libjansson-dev python3 python3-numpy python3-msgpack python3-pil
python3-sklearn clang libclang-rt-14-dev zip time"
case "$1" in
check)
  for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || exit 1
  done
  exit 0 ;;
install)
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get install -y -q --no-install-recommends $PKGS ;;
*)
  echo "usage: tests/deps.sh check|install" >&2; exit 2 ;;
esac
