#!/usr/bin/env bash
# One lent GPU session's benchmark work, sized to fit about 10 minutes of device time:
# the full table in two parts (each part's JSON kept even if the time limit cuts it off),
# then the instrumentation probe with the optimized programs, everything under $OUT in at
# most 8 files. Run from the repository root on the GPU machine (JAX with CUDA, optax,
# scikit-learn and PyTorch installed there; jaxrelu from this checkout):
#
#     OUT=/some/dir bash benchmarks/gpu_session.sh      # QUICK=1: the smoke sizes, here too
#
# Then, here:
#     python benchmarks/run.py --merge part1.json part2.json --json benchmarks/results/gpu-CARD.json
#     python benchmarks/run.py --render benchmarks/results/cpu.json \
#         benchmarks/results/gpu-CARD.json --markdown benchmarks/RESULTS.md --readme README.md
set -u
: "${OUT:?set OUT to the folder the results go to}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
quick=${QUICK:+--quick}
nvidia-smi -L 2>/dev/null
python3 -c "import jax, optax, torch; print('jax', jax.__version__, jax.devices(), 'torch', torch.__version__)"
timeout "${T1:-300}" python3 benchmarks/run.py $quick --only training --no-torch-compile \
    --json "$OUT/part1.json" > "$OUT/part1.log" 2>&1
echo "training: exit $?"
timeout "${T2:-240}" python3 benchmarks/run.py $quick --only volume checker kinks lexicographic \
    activations --no-torch-compile --json "$OUT/part2.json" > "$OUT/part2.log" 2>&1
echo "the rest: exit $?"
hlo=$(mktemp -d)
sizes=${QUICK:+small}
timeout "${T3:-150}" python3 benchmarks/probe_instrumentation.py --sizes ${sizes:-small medium large} \
    --json "$OUT/probe.json" --hlo "$hlo" > "$OUT/probe.log" 2>&1
echo "probe: exit $?"
tar -czf "$OUT/hlo.tar.gz" -C "$hlo" . && rm -rf "$hlo"
grep -hE "^## |rows; goals|FAILED" "$OUT/part1.log" "$OUT/part2.log"
tail -n 20 "$OUT/probe.log"
