#!/usr/bin/env bash
# The nightly-style fuzz run: every target for FUZZ_SECONDS (default 600) from its kept seeds
# (fuzz/seeds/<target>) and the corpus of earlier runs (fuzz/corpus/<target>, not committed).
# A crash stops the run and leaves its input in fuzz/artifacts/<target>/; add the minimised
# input to fuzz/seeds/<target>/ with the fix.
#
# Usage: bash tests/fuzz-long.sh [TARGET...]     Env: FUZZ_SECONDS=N, FUZZ_JOBS=N (default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-600}
FUZZ_JOBS=${FUZZ_JOBS:-1}
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version 0.13.2 >/dev/null
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz list)
fi
for target in "${targets[@]}"; do
  bash fuzz/seed-corpus.sh "$target"
  printf '\n=== fuzz %s for %ss\n' "$target" "$FUZZ_SECONDS"
  (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "corpus/$target" -- \
     -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS")
done
echo "fuzzing finished: no crash"
