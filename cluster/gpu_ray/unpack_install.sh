#!/usr/bin/env bash
# Reassemble, verify and install the wheels cluster/gpu_ray/pack_wheels.py packed, offline.
#
#   bash unpack_install.sh DIR [--python PYTHON] [--target SITE] [--no-install]
#
# DIR holds the transfer-NN folders (copied there one transfer at a time; the files may also lie in DIR
# itself). Steps, each stopping the script with one line naming what failed:
#   1. gather every file of DIR/transfer-*/ into DIR/wheels
#   2. check every part against SHA256SUMS.parts (a part damaged in transfer is named)
#   3. join NAME.part-000, NAME.part-001, ... into NAME (in order) and remove the parts
#   4. check every whole file against SHA256SUMS
#   5. PYTHON -m pip install --no-index --find-links DIR/wheels -r DIR/wheels/requirements.txt, or with
#      --target SITE (a Python whose site-packages cannot be written): exactly these wheels, --no-deps, into
#      SITE (then export PYTHONPATH=SITE and PATH=SITE/bin:$PATH); skipped with --no-install. Then
#      `import ray` must work.
set -euo pipefail

usage() { echo "usage: bash unpack_install.sh DIR [--python PYTHON] [--target SITE] [--no-install]" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
DIR=$1; shift
PYTHON=${PYTHON:-python3}
INSTALL=1
TARGET=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --python) PYTHON=$2; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --target) TARGET=$2; shift 2 ;;
    *) usage ;;
  esac
done
[[ -d $DIR ]] || { echo "error: $DIR is not a directory" >&2; exit 2; }
WHEELS=$DIR/wheels
mkdir -p "$WHEELS"

# 1. gather
shopt -s nullglob
for f in "$DIR"/transfer-*/* "$DIR"/*.whl "$DIR"/*.part-* "$DIR"/SHA256SUMS* "$DIR"/requirements.txt; do
  [[ -f $f ]] && mv -f "$f" "$WHEELS/"
done
cd "$WHEELS"
for f in SHA256SUMS SHA256SUMS.parts requirements.txt; do
  [[ -f $f ]] || { echo "error: $f is missing from $DIR (it travels in transfer-01)" >&2; exit 1; }
done

# 2. parts
if [[ -s SHA256SUMS.parts ]]; then
  while read -r _ part; do
    [[ -f $part || -f ${part%.part-*} ]] || { echo "error: part $part is missing: copy every transfer-NN folder into $DIR" >&2; exit 1; }
  done < SHA256SUMS.parts
  if ! bad=$(sha256sum --quiet -c SHA256SUMS.parts --ignore-missing 2>&1); then
    echo "error: sha256 mismatch: ${bad//$'\n'/; } (send that part again)" >&2; exit 1
  fi
fi

# 3. join
for first in *.part-000; do
  whole=${first%.part-000}
  cat "$whole".part-* > "$whole.joining"  # the glob sorts part-000, part-001, ... in order
  mv "$whole.joining" "$whole"
  rm -f "$whole".part-*
done

# 4. wholes
while read -r _ whole; do
  [[ -f $whole ]] || { echo "error: $whole is missing: copy every transfer-NN folder into $DIR" >&2; exit 1; }
done < SHA256SUMS
if ! bad=$(sha256sum --quiet -c SHA256SUMS 2>&1); then
  echo "error: sha256 mismatch after reassembly: ${bad//$'\n'/; }" >&2; exit 1
fi
echo "verified $(wc -l < SHA256SUMS) wheels in $WHEELS"

# 5. install
if [[ $INSTALL == 1 && -n $TARGET ]]; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$TARGET" ./*.whl
  PYTHONPATH="$TARGET${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -c "import ray; print('ray', ray.__version__, 'installed in $TARGET')"
elif [[ $INSTALL == 1 ]]; then
  "$PYTHON" -m pip install --no-index --find-links "$WHEELS" -r requirements.txt
  "$PYTHON" -c "import ray; print('ray', ray.__version__, 'installed')"
fi
