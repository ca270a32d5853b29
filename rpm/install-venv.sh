#!/usr/bin/env bash
# Build a package's self-contained application environment inside the RPM buildroot.
#
# usage: install-venv.sh BUILDROOT APPDIR PYTHON WHEEL [WHEELHOUSE]
#
# A venv is created at its final path under BUILDROOT and filled from wheels only (no index,
# no network): WHEEL (cortex-kernel itself) plus, when given, every wheel in WHEELHOUSE, which
# build_rpms.py resolved beforehand, so the wheelhouse is the lock file. Without WHEELHOUSE
# only cortex-kernel is installed (the light build used by the test suite; not runnable).
# Afterwards nothing in the tree may mention BUILDROOT, so the venv works at APPDIR.
set -euo pipefail

if [ "$#" -lt 4 ] || [ "$#" -gt 5 ]; then
  echo "usage: $0 BUILDROOT APPDIR PYTHON WHEEL [WHEELHOUSE]" >&2
  exit 2
fi
buildroot=$1
appdir=$2
python=$3
wheel=$4
wheelhouse=${5:-}
target="$buildroot$appdir"

# The venv gets no pip of its own when the build interpreter's pip can install into it
# (pip >= 22.3, --python): faster, and nothing to remove afterwards. Otherwise ensurepip seeds
# one, which is removed again below. --isolated: the build host's pip.conf and PIP_* variables
# (indexes, constraints) must not change what goes into a package.
"$python" -m venv --without-pip "$target"
if "$python" -m pip --isolated --python "$target/bin/python" --version >/dev/null 2>&1; then
  pip=("$python" -m pip --isolated --python "$target/bin/python" --disable-pip-version-check --no-input)
  seeded=()
else
  "$target/bin/python" -m ensurepip --default-pip >/dev/null
  pip=("$target/bin/python" -m pip --isolated --disable-pip-version-check --no-input)
  seeded=(pip setuptools)
fi

install=(install --no-index --no-deps --no-compile --no-warn-script-location "$wheel")
if [ -n "$wheelhouse" ]; then
  shopt -s nullglob
  wheels=("$wheelhouse"/*.whl)
  shopt -u nullglob
  "${pip[@]}" "${install[@]}" "${wheels[@]}"
  "${pip[@]}" check
  # Keep a seeded pip or setuptools when the application itself requires it.
  for dist in pip setuptools; do
    if compgen -G "$wheelhouse/$dist-*.whl" >/dev/null; then
      seeded=("${seeded[@]/$dist/}")
    fi
  done
else
  "${pip[@]}" "${install[@]}"
fi
remove=()
for dist in "${seeded[@]}"; do
  if [ -n "$dist" ]; then
    remove+=("$dist")
  fi
done
if [ "${#remove[@]}" -gt 0 ]; then
  # One call: pip cannot run again after it has removed itself.
  "${pip[@]}" uninstall --yes "${remove[@]}" >/dev/null
fi

# Entry-point scripts must start the venv's interpreter at its final path. pip wrote the
# buildroot path into them, or, when that path was long, a /bin/sh trampoline instead of a
# shebang; both become a plain "#!APPDIR/bin/python".
"$target/bin/python" - "$target/bin" "$appdir/bin/python" <<'PYTHON'
import pathlib
import sys

bindir, python = pathlib.Path(sys.argv[1]), sys.argv[2].encode()
trampoline = [b"#!/bin/sh", b"'''exec' ", b"' '''"]
for script in sorted(bindir.iterdir()):
    if script.is_symlink() or not script.is_file():
        continue
    lines = script.read_bytes().split(b"\n")
    if lines[0].startswith(b"#!") and b"python" in lines[0]:
        lines[0] = b"#!" + python
    elif len(lines) > 3 and lines[0] == trampoline[0] and lines[1].startswith(trampoline[1]) and lines[2] == trampoline[2]:
        lines[:3] = [b"#!" + python]
    else:
        continue
    script.write_bytes(b"\n".join(lines))
PYTHON

# pip records where each wheel came from (a path on the build host); a package has no use for it.
find "$target" -name direct_url.json -path '*.dist-info/*' -delete

# Byte-compile now: the service users cannot write under ProtectSystem=strict, and the recorded
# source paths must be the installed ones.
"$target/bin/python" -m compileall -q -j 0 -s "$buildroot" -p / "$target" >/dev/null

# Scripts' shebangs, pyvenv.cfg and the activate scripts name the buildroot; drop it.
escaped=$(printf '%s' "$buildroot" | sed 's/[][\.*^$/|]/\\&/g')
{ grep -rlIZ --fixed-strings -- "$buildroot" "$target" || true; } | xargs -0r sed -i "s|$escaped||g"
if grep -rlI --fixed-strings -- "$buildroot" "$target"; then
  echo "install-venv.sh: the files above still mention the buildroot" >&2
  exit 1
fi
