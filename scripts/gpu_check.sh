#!/usr/bin/env bash
# GPU ground truth for issue 19 (docs/bench.md, "On a GPU"): probe on CUDA, the measured
# kernel table, calibrate --kernels, and bench of a 1B-class and an 8B-class random-weight
# model (4 layers each), predicted before and after the fit. Installs nothing: it uses the
# machine's torch / transformers / scipy / rich / typer (listed into the log first).
#
#   OUT=/some/dir bash scripts/gpu_check.sh        # run from the repository root
#
# Everything is logged to $OUT/run.log; the tables to $OUT/report.txt. Files in $OUT
# (8 at most): run.log, report.txt, probe.toml, kernels.csv, calibrated.toml,
# bench/bench.csv and the two shrunk configs beside it. Each step has its own timeout;
# the whole run stays under 8 minutes (probe 150 s budget; worst case ~7.5 min).
set -euo pipefail

OUT="${OUT:?set OUT to an output directory}"
mkdir -p "$OUT/bench"
LOG="$OUT/run.log"
REPORT="$OUT/report.txt"
: >"$LOG"
: >"$REPORT"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 MPLBACKEND=Agg
export PYTHONUNBUFFERED=1 COLUMNS=200
PY="${PYTHON:-python3}"
T0=$(date +%s)

log() { echo "[$(date -u +%H:%M:%S) +$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }

# step NAME SECONDS CMD...: run with a timeout, stdout to the report and the log, stderr
# to the log; a failed step is logged and the script goes on (later steps may need it:
# they check their inputs).
step() {
  local name=$1 secs=$2
  shift 2
  log "step $name (timeout ${secs}s): $*"
  echo "=== $name: $*" >>"$REPORT"
  local rc=0
  timeout --kill-after=10 "$secs" "$@" > >(tee -a "$REPORT" >>"$LOG") 2>>"$LOG" || rc=$?
  log "step $name exit $rc"
  return 0
}

log "environment"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
  "$PY" -m pip list 2>/dev/null | grep -i -E '^(torch|transformers|scipy|numpy|rich|typer) ' || true
  "$PY" - <<'EOF' || true
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(), torch.cuda.get_device_capability())
EOF
} >>"$LOG" 2>&1

DEV_ID=$("$PY" -c "import torch; from llmroofline.probe import match_catalog; print(match_catalog(torch.cuda.get_device_name()) or '')" 2>>"$LOG" || true)
log "catalog entry: ${DEV_ID:-none}"

step probe 200 "$PY" -m llmroofline probe --device cuda --budget-s 150 \
  --out "$OUT/probe.toml" --kernels-out "$OUT/kernels.csv"

if [[ -s "$OUT/kernels.csv" && -n "$DEV_ID" ]]; then
  step calibrate 60 "$PY" -m llmroofline calibrate --kernels "$OUT/kernels.csv" \
    --hardware "$DEV_ID" --out "$OUT/calibrated.toml"
fi

HW="${DEV_ID:-$OUT/probe.toml}"
for spec in "llama-3.2-1b:--diagnose" "llama-3.1-8b:--no-diagnose"; do
  model=${spec%%:*}
  diag=${spec#*:}
  step "bench-$model" 100 "$PY" -m llmroofline bench --device cuda --model "$model" --layers 4 \
    --batch 1 --input 512 --output 64 --repeats 3 "$diag" --hardware "$HW" \
    --csv "$OUT/bench/bench.csv"
done

if [[ -s "$OUT/bench/bench.csv" ]]; then
  step validate-before 40 "$PY" -m llmroofline validate "$OUT/bench/bench.csv" --rows
  if [[ -s "$OUT/calibrated.toml" ]]; then
    step validate-after 40 "$PY" -m llmroofline validate "$OUT/bench/bench.csv" --rows \
      --profile "$OUT/calibrated.toml"
  fi
fi
log "done in $(( $(date +%s) - T0 )) s"
