#!/usr/bin/env bash
# Issue 21's GPU checks in one run, sized for the device's 10 minutes a command, from the project root of a GPU
# machine set up with ../shared/device/pack.sh:
#   source .device-pack/unpack.sh && bash scripts/gpu_checks.sh
#   bash scripts/gpu_checks.sh --dry-run     # here, on a CPU: every step with tiny settings; no figure means anything
# 1. tests/chunked/test_chunked_steps.py, its GPU tests included (graph captures and replays counted, no host sync in a step)
# 2. scripts/benchmark.py --device cuda --graphs: A, B, B with model.cuda_graphs=true (C), and the floor eager (F)
#    and graphed (G), alternating in one run; then one 20-epoch run with graphs, for the whole-process goal
# 3. eight trials at once on the one card (hydra/launcher=joblib hydra.launcher.n_jobs=8 trainer=gpu, 3 epochs
#    each), without and with graphs: the wall time for all eight
# The figures land in $OUT (logs/gpu_checks without it): summary.txt gathers them; the logs beside it.
# The GPU machine lacks the joblib launcher: pack its wheel beside Hydra's (unpack.sh installs every wheel there):
#   .venv/bin/python -m pip download -q --no-deps hydra-joblib-launcher==1.2.0 -d .device-pack/whl
# RUNS and EPOCHS (default 2 and 3) size the benchmark.
set -uo pipefail
cd "$(dirname "$0")/.."
dry=false
[[ "${1:-}" == "--dry-run" ]] && dry=true
out=${OUT:-logs/gpu_checks}
mkdir -p "$out"
scratch=$(mktemp -d /tmp/gpu-checks-XXXX)  # run folders stay here: only a few files may come back from $OUT
summary="$out/summary.txt"
if $dry; then
  py=${PYTHON:-.venv/bin/python}
  device=cpu trainer=trainer=cpu epochs=1 runs=1 full_epochs=1 trials=2
  limits=(trainer.limit_train_batches=4 trainer.limit_val_batches=1 trainer.limit_test_batches=1
          trainer.val_check_interval=2)
  bench_limits=(--limit-train-batches 4 --limit-val-batches 1 --limit-test-batches 1 --val-check-interval 2)
  tests=(tests/chunked/test_chunked_steps.py -k "cuda_graphs or gpu or graph")
else
  py=${PYTHON:-python3}
  device=cuda trainer=trainer=gpu epochs=${EPOCHS:-3} runs=${RUNS:-2} full_epochs=20 trials=8
  limits=() bench_limits=() tests=(tests/chunked/test_chunked_steps.py)
fi

say() { echo "$*" | tee -a "$summary"; }
seconds_since() { "$py" -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$1"; }

: > "$summary"
say "# issue 21 GPU checks, $(date -u +%Y-%m-%dT%H:%MZ)$($dry && echo ', DRY RUN on the CPU: no figure means anything')"
say "$("$py" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU',
                                    '| torch', torch.__version__)")"

echo "== 1. tests"
timeout 240 "$py" -m pytest "${tests[@]}" -q -rs -p no:cacheprovider > "$out/pytest.log" 2>&1
say "tests (rc $?): $(tail -n 1 "$out/pytest.log")"

echo "== 2. benchmark"
timeout 300 "$py" scripts/benchmark.py --device "$device" --graphs --epochs "$epochs" --runs "$runs" \
  "${bench_limits[@]}" --out "$out/benchmark.json" > "$out/benchmark.txt" 2>&1
say "benchmark (rc $?): $out/benchmark.json"
"$py" - "$out/benchmark.json" <<'EOF' | tee -a "$summary"
import json, sys
result = json.load(open(sys.argv[1]))
for side in result["sides"]:
    m = result[side]
    print(f"  {side}: {m['seconds_per_epoch']['median']:.2f} s an epoch, whole process "
          f"{m['wall_seconds']['median']:.1f} s, test/acc {m['test_acc']['median']:.4f} "
          f"(medians of {result['runs']}, {result['epochs']} epochs)")
for line in result["verdicts"]:
    print(" ", line)
EOF

started=$(date +%s.%N)
timeout 90 "$py" src/train.py "$trainer" model.cuda_graphs=true trainer.max_epochs="$full_epochs" "${limits[@]}" \
  hydra.run.dir="$scratch/full" > "$out/train_full.log" 2>&1
rc=$? wall=$(seconds_since "$started")
"$py" - "$scratch/full/metrics.json" "$wall" "$full_epochs" "$rc" <<'EOF' | tee -a "$summary"
import json, sys
path, wall, epochs, rc = sys.argv[1:]
m = json.load(open(path)) if rc == "0" else {}
print(f"{epochs} epochs with graphs (rc {rc}): whole process {wall} s, {m.get('seconds_per_epoch')} s an epoch, "
      f"test/acc {m.get('test/acc')}")
EOF
grep -h "cuda_graphs=true needs" "$out/train_full.log" | tee -a "$summary"

echo "== 3. $trials trials at once"
if "$py" -c "import hydra_plugins.hydra_joblib_launcher" 2>/dev/null; then
  for graphs in false true; do
    started=$(date +%s.%N)
    timeout 120 "$py" src/train.py -m hydra/launcher=joblib hydra.launcher.n_jobs="$trials" "$trainer" \
      trainer.max_epochs=3 "${limits[@]}" model.cuda_graphs="$graphs" "seed=range(1,$((trials + 1)))" \
      hydra.sweep.dir="$scratch/sweep_$graphs" > "$out/sweep_$graphs.log" 2>&1
    rc=$? wall=$(seconds_since "$started")
    done_jobs=$(ls "$scratch"/sweep_"$graphs"/*/metrics.json 2>/dev/null | wc -l)
    say "$trials trials at once, 3 epochs each, model.cuda_graphs=$graphs (rc $rc): $wall s for all," \
        "$done_jobs finished"
  done
else
  say "$trials trials at once: skipped, hydra-joblib-launcher is not installed (see this script's header)"
fi
rm -rf "$scratch"
