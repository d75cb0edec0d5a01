#!/usr/bin/env bash
# Install detectron2 for transfer/ (PASCAL VOC / COCO fine-tuning) and say which route was taken.
#
#   bash transfer/setup_detectron2.sh [--official | --sdist]     (PYTHON=... to pick the interpreter)
#
# Routes (auto: official when GitHub is reachable and CUDA + nvcc are present, else sdist):
#   official  the official detectron2 from source at a pinned commit, with its compiled CUDA ops,
#             built against the installed torch (pip --no-build-isolation).  For GPU clusters.
#   sdist     upstream detectron2 v0.6's pure-Python code from the PyPI sdist pb1-detectron2==0.6
#             (byte-identical to v0.6, Apache-2.0, no C++ sources), unpacked into the gitignored
#             third_party/detectron2-v0.6; transfer/compat.py puts it on sys.path, provides a
#             stand-in detectron2._C and the numpy/Pillow aliases v0.6 needs.  Works offline from
#             GitHub (PyPI only) and on CPU.  Unavailable: deformable conv, rotated boxes, fast
#             C++ COCOeval (none used by the paper's configs).
# Either route first installs the runtime dependencies detectron2 needs from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
D2_COMMIT="${D2_COMMIT:-2dde706855d87baa9760fbcd0bdb6004a3937204}"   # facebookresearch/detectron2
SDIST_VERSION="0.6"
SDIST_SHA256="5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
DEST="third_party/detectron2-v0.6"
ROUTE="${1:-auto}"
T0=$(date +%s)

DEPS=("fvcore>=0.1.5,<0.1.6" "iopath>=0.1.7,<0.1.10" "pycocotools>=2.0.2" "omegaconf>=2.1"
      "hydra-core>=1.1" "yacs>=0.1.8" "tabulate" "termcolor>=1.1" "cloudpickle" "setuptools")

has_compiled_d2() {
  "$PY" - <<'PYEOF' 2>/dev/null
import importlib.util, sys
sys.exit(0 if importlib.util.find_spec("detectron2") and importlib.util.find_spec("detectron2._C") else 1)
PYEOF
}

case "$ROUTE" in
  --official) ROUTE=official ;;
  --sdist) ROUTE=sdist ;;
  auto)
    if has_compiled_d2; then
      ROUTE=existing
    elif command -v nvcc >/dev/null 2>&1 \
         && "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null \
         && timeout 8 "$PY" -c "import urllib.request; urllib.request.urlopen('https://github.com', timeout=5)" 2>/dev/null; then
      ROUTE=official
    else
      ROUTE=sdist
    fi ;;
  *) echo "error: unknown option $ROUTE (use --official or --sdist)" >&2; exit 2 ;;
esac

echo "[setup-transfer] route: $ROUTE"
"$PY" -m pip install --quiet "${DEPS[@]}"

case "$ROUTE" in
  existing)
    echo "[setup-transfer] detectron2 with compiled ops already installed; nothing to do" ;;
  official)
    "$PY" -m pip install --no-build-isolation \
      "detectron2 @ git+https://github.com/facebookresearch/detectron2.git@${D2_COMMIT}"
    echo "[setup-transfer] official detectron2 @ ${D2_COMMIT} (compiled ops)" ;;
  sdist)
    if [ -f "$DEST/detectron2/__init__.py" ] && [ -f "$DEST/.sha256" ] \
       && [ "$(cat "$DEST/.sha256")" = "$SDIST_SHA256" ]; then
      echo "[setup-transfer] $DEST already present"
    else
      mkdir -p third_party
      TMP="$(mktemp -d third_party/.d2.XXXXXX)"
      trap 'rm -rf "$TMP"' EXIT
      # pip download builds the sdist's metadata, whose setup.py imports torch: no build isolation.
      # pip >= 24 refuses the sdist outright ("Distributions from PyPI cannot declare direct URL
      # dependencies", for an optional extra); then the download goes through pip 23.2.1 put in front of
      # the venv's own pip on PYTHONPATH (the venv's pip itself is left as it is).
      PIP_MAJOR="$("$PY" -c 'import pip; print(pip.__version__.split(".")[0])')"
      PIP_PATH=""
      if [ "$PIP_MAJOR" -ge 24 ]; then
        "$PY" -m pip install --quiet --target "$TMP/oldpip" "pip==23.2.1"
        PIP_PATH="$TMP/oldpip"
      fi
      PYTHONPATH="$PIP_PATH${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m pip download --quiet --no-deps \
        --no-build-isolation --no-binary :all: "pb1-detectron2==${SDIST_VERSION}" -d "$TMP"
      TARBALL="$TMP/pb1-detectron2-${SDIST_VERSION}.tar.gz"
      echo "$SDIST_SHA256  $TARBALL" | sha256sum -c --quiet -
      mkdir "$TMP/src"
      tar xzf "$TARBALL" -C "$TMP/src" --strip-components=1
      echo "$SDIST_SHA256" > "$TMP/src/.sha256"
      rm -rf "$DEST"
      mv "$TMP/src" "$DEST"
    fi
    echo "[setup-transfer] detectron2 v${SDIST_VERSION} Python code from PyPI sdist pb1-detectron2 in $DEST (no compiled ops)" ;;
esac

# `import detectron2` in the venv for everyone (detectron2's tools, a user's scripts): a .pth line registers
# transfer.compat's import hook (aliases first; the unpacked sdist on sys.path; the _C stand-in where needed)
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo 'import sys; exec("try:\n import transfer.compat as _m\n _m.install_import_hook()\nexcept ImportError:\n pass")' \
  > "$SITE/mocobench_detectron2.pth"
"$PY" -c "from transfer.compat import ensure_detectron2; r = ensure_detectron2(); import detectron2; print(f'[setup-transfer] import ok: detectron2 {detectron2.__version__} ({r}) from {detectron2.__file__}')"
PY_ABS="$(cd "$(dirname "$(command -v "$PY")")" && pwd)/$(basename "$PY")"
(cd / && "$PY_ABS" -c "import detectron2, detectron2.modeling; from detectron2 import _C; print('[setup-transfer] plain import detectron2 ok in the venv')")
echo "[setup-transfer] done in $(( $(date +%s) - T0 ))s"
