#!/usr/bin/env bash
# Runs every fuzz target briefly: FUZZ_SECONDS each (default 15; about 135 s of fuzzing for the
# nine targets, plus the first build). Skips, successfully, when cargo-fuzz is not installed;
# the seeds and regressions are replayed by `cargo test --test fuzz_corpus` either way.
#
# New inputs go to fuzz/grown/<target>/ (ignored by git), never into the committed seeds in
# fuzz/corpus/. A crash fails the script; its input is in fuzz/artifacts/<target>/ (see
# fuzz/README.md, "When a target crashes").
set -euo pipefail
cd "$(dirname "$0")"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/ci.sh: cargo-fuzz is not installed (cargo install cargo-fuzz --locked); skipped"
    exit 0
fi

seconds="${FUZZ_SECONDS:-15}"
cargo fuzz build -s none
for target in $(cargo fuzz list); do
    mkdir -p "grown/$target"
    dirs=("grown/$target" "corpus/$target")
    if [ -d "regressions/$target" ]; then
        dirs+=("regressions/$target")
    fi
    echo "fuzz/ci.sh: $target for ${seconds}s"
    log="grown/$target.log"
    if ! cargo fuzz run -s none "$target" "${dirs[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=512 \
        -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz/ci.sh: $target crashed; the input is in fuzz/artifacts/$target/"
        exit 1
    fi
    grep -E "^stat::(number_of_executed_units|average_exec_per_sec)" "$log" || true
done
echo "fuzz/ci.sh: every target ran ${seconds}s without a crash"
