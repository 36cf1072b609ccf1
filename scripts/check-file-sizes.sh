#!/usr/bin/env bash
# No product source file over 500 lines (docs/development.md, "Code style"): a longer file
# usually holds two ideas. Counts every tracked .rs and .go file except tests, benchmarks, fuzz
# targets and the test kit (tests/, bench/, benches/, fuzz/, testkit/, any tests/ directory,
# tests.rs and *_tests.rs beside the code). Run by .ci/run; exits 1 listing each file over.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=500
over=$(git ls-files '*.rs' '*.go' \
    | grep -vE '^(tests|bench|benches|fuzz|testkit)/|/tests/|(^|/)tests\.rs$|_tests\.rs$' \
    | xargs -r wc -l | awk -v limit="$limit" '$2 != "total" && $1 > limit {print "  " $2 ": " $1 " lines"}')
if [ -n "$over" ]; then
    echo "product files over $limit lines (split each by idea):"
    echo "$over"
    exit 1
fi
echo "  ok: no product file over $limit lines"
