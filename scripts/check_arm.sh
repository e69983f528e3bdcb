#!/usr/bin/env bash
# Does the inference install resolve on a 64-bit ARM board (Raspberry Pi 4/5
# with a 64-bit OS)? Downloads, without installing, binary wheels of every
# base dependency (and the mic and serve extras) for manylinux aarch64 and
# CPython 3.11, and names any that has none. `make check-arm`; docs/install.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# The base dependencies and the light extras, read from pyproject.toml.
mapfile -t reqs < <("$PYTHON" - <<'PY'
import tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
for r in p["dependencies"] + p["optional-dependencies"]["mic"] + p["optional-dependencies"]["serve"]:
    print(r)
PY
)
# manylinux2014 is glibc 2.17; manylinux_2_28 is glibc 2.28 and newer (Raspberry
# Pi OS bookworm has 2.36). The second must pass; the first is reported.
status=1
for platform in manylinux2014_aarch64 manylinux_2_28_aarch64; do
  if "$PYTHON" -m pip download -q --only-binary=:all: --platform "$platform" \
      --python-version 3.11 --implementation cp -d "$WORK/$platform" "${reqs[@]}" 2>"$WORK/err"; then
    echo "check-arm: $platform, CPython 3.11: every dependency has a wheel:" >&2
    (cd "$WORK/$platform" && ls | sed 's/^/  /')
    [ "$platform" = manylinux_2_28_aarch64 ] && status=0
  else
    echo "check-arm: $platform, CPython 3.11: $(grep -m1 'No matching distribution' "$WORK/err" || tail -1 "$WORK/err")" >&2
  fi
done
exit $status
