#!/usr/bin/env bash
# The GPU path, proved on a machine with a CUDA GPU in a few minutes (well under 10 on one GPU):
# one epoch of each method (sgd, kd, sprkd with a teacher that tracked its saddles (3 epochs on digits), sage
# with one round after its first epoch) on digits and on a tiny local BERT (SST-2-shaped files, built here from
# configs: nothing from the network), at each of $PRECISIONS; the seconds and peak GPU memory of each
# (torch.cuda.max_memory_allocated, in the process that trained); a hessian-report on each data set's
# sgd student; and, at the first precision, sgd and kd trained twice with the same seed, compared number
# for number (`runs show --json`). Ends with a table and exits 1 if any step failed or a rerun differed.
#
#   bash bench/gpu_check.sh                  PYTHON=... (default .venv/bin/python, else python3)
#   PRECISIONS="fp32" DATASETS="digits" bash bench/gpu_check.sh
#   PRECISIONS=default GPU_CHECK_DEVICE=cpu bash bench/gpu_check.sh     the same steps on the CPU, without
#                                            --precision (a dry run of this script on a machine without a GPU)
#
# --precision fp32|bf16 is a training flag of distill/train-teacher (PRECISIONS=default passes none).
# Without CUDA the script says so in one line and exits 0. The store (--db), artifacts, data caches and
# numba's cache all go to a temporary folder ($WORK, printed; kept for inspection): nothing lands in
# the checkout.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
HELPER="$REPO/bench/gpu_check.py"
DEVICE=${GPU_CHECK_DEVICE:-cuda}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

if [ "$DEVICE" = cuda ] && ! "$PY" "$HELPER" cuda 2>/dev/null; then
    echo "gpu_check: no CUDA GPU visible to torch here (torch.cuda.is_available() is False); nothing to check"
    exit 0
fi

PRECISIONS=${PRECISIONS:-"fp32 bf16"}
DATASETS=${DATASETS:-"digits text"}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sprkd-gpu-check.XXXXXX")
DB="$WORK/runs.db"
TSV="$WORK/steps.tsv"
export SPRKD_ARTIFACTS="$WORK/artifacts" SPRKD_CACHE_DIR="$WORK/cache" NUMBA_CACHE_DIR="$WORK/numba"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
FAILED=0
echo "gpu_check: device $DEVICE, precisions: $PRECISIONS, data: $DATASETS; work folder $WORK"
"$PY" "$HELPER" data "$WORK/text" || { echo "gpu_check: could not build the tiny BERT and its data"; exit 1; }

step() {  # LABEL SPRKD-ARGS...: run it, its --json output to $WORK/LABEL.json, its time and memory to $TSV
    local label=$1
    shift
    if "$PY" "$HELPER" measure "$TSV" "$label" -- --db "$DB" "$@" --json >"$WORK/$label.json" 2>"$WORK/$label.err"; then
        echo "  $label: ok"
    else
        echo "  $label: FAILED: $(grep -v '^\s*$' "$WORK/$label.err" | tail -n 1)"
        FAILED=$((FAILED + 1))
    fi
}

run_id() {  # LABEL: the run id in LABEL's outcome (empty when the step failed)
    "$PY" -c 'import json, sys
try: print(json.load(open(sys.argv[1]))["run_id"])
except Exception: pass' "$WORK/$1.json"
}

same() {  # LABEL-A LABEL-B: the two runs' metrics number for number
    local a b
    a=$(run_id "$1") b=$(run_id "$2")
    if [ -z "$a" ] || [ -z "$b" ]; then
        echo "  same seed, $1 vs $2: not compared (a run failed)"
        FAILED=$((FAILED + 1))
        return
    fi
    "$PY" -m sprkd_cli --db "$DB" runs show "$a" --json >"$WORK/$1.show.json"
    "$PY" -m sprkd_cli --db "$DB" runs show "$b" --json >"$WORK/$2.show.json"
    echo -n "  same seed, $1 vs $2: "
    "$PY" "$HELPER" same "$WORK/$1.show.json" "$WORK/$2.show.json" || FAILED=$((FAILED + 1))
}

first=1
for precision in $PRECISIONS; do
    flags=(--device "$DEVICE" --seed 0)
    [ "$precision" = default ] || flags+=(--precision "$precision")
    for ds in $DATASETS; do
        if [ $ds = digits ]; then
            # as make demo: negative curvature shows among the 16 largest eigenvalues in the first steps;
            # the student's body takes the teacher's 128-wide embedding (sage needs it)
            data=(--dataset digits --lr 0.003)
            teacher=(--model mlp:width=128,depth=1 --epochs 3 --saddle-every 5 --saddle-top-n 16)
            student=(--student mlp:width=128,depth=1)
        else
            data=(--dataset sst2 --data-dir "$WORK/text/glue" --batch-size 32 --lr 5e-3)
            teacher=(--model "hf:$WORK/text/teacher" --epochs 1 --saddle-every 10 --saddle-top-n 16)
            student=(--student "hf:$WORK/text/student")
        fi
        tag="$ds-$precision"
        echo "$tag:"
        step "$tag-teacher" train-teacher "${data[@]}" "${teacher[@]}" --track-saddles "${flags[@]}"
        tid=$(run_id "$tag-teacher")
        [ -n "$tid" ] || continue
        for method in sgd kd; do
            step "$tag-$method" distill --method $method --teacher "$tid" "${data[@]}" "${student[@]}" --epochs 1 "${flags[@]}"
        done
        step "$tag-sprkd" distill --method sprkd --teacher "$tid" "${data[@]}" "${student[@]}" --epochs 1 \
            --saddle-alpha 0.1 --saddle-fallback best "${flags[@]}"
        step "$tag-sage" distill --method sage --teacher "$tid" "${data[@]}" "${student[@]}" --epochs 2 \
            --sage-every 1 --sage-rounds 1 "${flags[@]}"
        if [ $first = 1 ]; then
            sgd=$(run_id "$tag-sgd")
            [ -n "$sgd" ] && step "$tag-hessian-report" hessian-report "$sgd"
            for method in sgd kd; do
                step "$tag-$method-again" distill --method $method --teacher "$tid" "${data[@]}" "${student[@]}" \
                    --epochs 1 "${flags[@]}"
                same "$tag-$method" "$tag-$method-again"
            done
        fi
    done
    first=0
done

"$PY" -m sprkd_cli --db "$DB" runs list --limit 0 --json >"$WORK/runs.json" 2>/dev/null
"$PY" "$HELPER" summary "$TSV" "$WORK" "$WORK/runs.json"
if [ $FAILED -gt 0 ]; then
    echo "gpu_check: $FAILED step(s) failed or differed; logs in $WORK"
    exit 1
fi
echo "gpu_check: every step passed; the runs are in $DB"
