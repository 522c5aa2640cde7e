#!/bin/sh
# Convert the public evaluation data sets and run `chatsvc eval classify` on each, one at a time.
#
#   bench/eval_classify_datasets.sh [DATA_DIR] [OUT_DIR]
#
# DATA_DIR holds banking77/, clinc150/ and mooc_urgency/ (default: ../shared/data next to the
# repository); OUT_DIR receives the converted CSVs and the outputs (default: /tmp/chatsvc-eval).
# Nothing is written inside the repository. Takes several minutes per data set on two cores.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${1:-$ROOT/../shared/data}
OUT=${2:-/tmp/chatsvc-eval}
mkdir -p "$OUT"
cd "$ROOT"

python -m chatsvc.classifier.datasets banking77 "$DATA/banking77" "$OUT"
python -m chatsvc.classifier.datasets clinc150 "$DATA/clinc150" "$OUT"
python -m chatsvc.classifier.datasets mooc "$DATA/mooc_urgency" "$OUT"

run() {
    name=$1
    shift
    echo "== $name: chatsvc eval classify $*"
    python -m chatsvc eval classify "$@" | tee "$OUT/$name.txt"
}

run banking77 --train "$OUT/banking77_train.csv" --cv 5
run clinc150 --train "$OUT/clinc150_train.csv" --test "$OUT/clinc150_val.csv" --reject-label oos
run mooc --train "$OUT/mooc_urgency.csv" --cv 5
python bench/classify_latency.py | tee "$OUT/latency.txt"
