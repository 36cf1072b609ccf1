#!/usr/bin/env bash
# Counts the product's Rust lines at a revision, the way issue 54's notes report them:
# every tracked .rs file under src/ and crates/ except tests (tests/ directories, tests.rs,
# *_tests.rs, src/test_api.rs).
#   all                every line of those files (the count of issue 54's first notes);
#   without-tests      the same without their `#[cfg(test)] mod … { … }` blocks;
#   code               without-tests less blank and comment lines.
# The block's end is found by counting braces, so a brace inside a string or char literal
# in a test module can shift it; no test module here has one.
# Usage: scripts/product-lines.sh [REV]   (default HEAD)
set -euo pipefail
rev=${1:-HEAD}
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
git archive "$rev" src crates | tar -x -C "$tree"
cd "$tree"
mapfile -t files < <(find src crates -name '*.rs' | grep -Ev '/tests/|(^|/|_)tests\.rs$|/test_api\.rs$' | sort)

without_test_modules() {
  awk '
    held != "" && /^[[:space:]]*(pub(\([a-z]+\))? )?mod [A-Za-z_]+ *\{/ { skip = 1; depth = 0; held = "" }
    held != "" { print held; held = "" }
    /^[[:space:]]*#\[cfg\(test\)\][[:space:]]*$/ { held = $0; next }
    skip { depth += gsub(/\{/, "{") - gsub(/\}/, "}"); if (depth <= 0) skip = 0; next }
    { print }
  ' "$@"
}

all=$(cat "${files[@]}" | wc -l)
kept=0
code=0
for file in "${files[@]}"; do
  text=$(without_test_modules "$file")
  kept=$((kept + $(printf '%s\n' "$text" | wc -l)))
  code=$((code + $(printf '%s\n' "$text" | grep -Evc '^[[:space:]]*(//.*)?$' || true)))
done
echo "$rev: files=${#files[@]} all=$all without-tests=$kept code=$code"
