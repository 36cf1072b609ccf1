#!/usr/bin/env bash
# Docs that name what the code defines (issue 62): in docs/architecture.md and
# docs/development.md, every backticked Rust name must still be defined somewhere in the
# workspace's Rust sources, and every backticked file name (`observation.rs`) must still exist;
# every file of the engine (crates/engine/src/*.rs) must have its row in docs/architecture.md.
#   - `WorkloadId`, `Scenario::CrashloopingSidecar`: the first name is an item (struct, enum,
#     trait, type, fn, const, static, mod) or an enum variant or field;
#   - `initial_list::watch_events`, `prom::has_value`: the last name is;
#   - Kubernetes' own words in backticks are listed below, and nothing else is exempt.
# Run by .ci/run; exits 1 listing each name that is not defined, with where it is named.
set -euo pipefail
cd "$(dirname "$0")/.."
DOCS=(docs/architecture.md docs/development.md)
# Names of Kubernetes, kube-rs or the standard library, not of this workspace.
NOT_OURS=(FailedCreate kube::Client watcher::Config::timeout)
SOURCES=(crates src harness testkit bench tests fuzz)
status=0

defined() { # name: defined as an item, or as an enum variant or struct field
    grep -rqE "(struct|enum|trait|type|fn|const|static|mod) $1\b|^\s*(pub(\([a-z]+\))? )?$1\s*([,({:=]|$)" \
        --include=*.rs "${SOURCES[@]}"
}

not_ours() {
    local n
    for n in "${NOT_OURS[@]}"; do [ "$n" = "$1" ] && return 0; done
    return 1
}

while IFS=: read -r file line name; do
    name=${name//\`/}
    name=${name%()}
    not_ours "$name" && continue
    case $name in
        [A-Z]*) item=${name%%::*} ;;
        *) item=${name##*::} ;;
    esac
    if ! defined "$item"; then
        echo "$file:$line: names \`$name\`, but no Rust source defines $item"
        status=1
    fi
done < <(grep -onP '`([A-Z][A-Za-z0-9]+(::[A-Za-z_][A-Za-z0-9_]*)*|[a-z_][a-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)+)(\(\))?`' "${DOCS[@]}" | sort -u)

while IFS=: read -r file line name; do
    name=${name//\`/}
    if [ -z "$(find "${SOURCES[@]}" -path "*${name}" -name "${name##*/}" -print -quit 2>/dev/null)" ]; then
        echo "$file:$line: names \`$name\`, which no source file is"
        status=1
    fi
done < <(grep -onP '`[A-Za-z0-9_/]*[a-z0-9_]+\.rs`' "${DOCS[@]}" | sort -u)

# lib.rs is the crate root, whose header is the table's caption.
for path in crates/engine/src/*.rs; do
    [ "${path##*/}" = lib.rs ] && continue
    name=${path##*/}
    if ! grep -qE "^\|.*\`(crates/engine/src/)?${name}\`" docs/architecture.md; then
        echo "docs/architecture.md: the engine's $path has no row in its table"
        status=1
    fi
done

[ "$status" = 0 ] && echo "  ok: the docs name only Rust items and files the code defines"
exit "$status"
