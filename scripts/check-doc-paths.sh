#!/usr/bin/env bash
# Docs that are true: every repository path that README.md, harness/README.md and docs/ name
# (src/..., crates/*/src/..., crates/*/tests/..., harness/..., tests/..., testkit/..., bench/..., config/..., a glob such as config/*/kustomization.yaml)
# must exist.
# Run by .ci/run; exits 1 listing each path that does not, with where it is named.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
while IFS=: read -r file line path; do
    path=${path%[.,:;)]}
    # Without its trailing slash: compgen -G echoes a word that ends in '/' unchecked.
    # shellcheck disable=SC2086 # a glob in the docs is expanded on purpose
    if ! compgen -G "${path%/}" >/dev/null; then
        echo "$file:$line: names $path, which does not exist"
        status=1
    fi
# Not inside a URL: no "host/" right before the match ("../docs/x.md" still counts).
done < <(grep -onP '(?<![A-Za-z0-9_-])(?<![A-Za-z0-9_-]/)(crates/[a-z]+/(src|tests)|src|harness|tests|testkit|bench|benches|config|charts|scripts|docs|crds|examples|fuzz)/[A-Za-z0-9_./*{}-]+' \
    README.md harness/README.md docs/*.md docs/*/*.md | sort -u)
exit $status
