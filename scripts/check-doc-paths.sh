#!/usr/bin/env bash
# Docs that are true: every repository path that README.md, harness/README.md and docs/ name
# (src/..., crates/*/src/..., crates/*/tests/..., harness/..., tests/..., testkit/..., bench/..., config/..., a glob such as config/*/kustomization.yaml)
# must exist; so must every such path a comment (`//`, `///`, `//!`) of a tracked .rs file
# names, from the repository's root or from the root of the file's own package (fuzz/'s
# `src/lib.rs` is fuzz/src/lib.rs), and every heading such a comment links (`docs/x.md#anchor`).
# A Rust path a doc comment names must be an intra-doc link (the last check below).
# Run by .ci/run; exits 1 listing each path that does not, with where it is named.
set -euo pipefail
cd "$(dirname "$0")/.."
# Not inside a URL: no "host/" right before the match ("../docs/x.md" still counts).
pattern='(?<![A-Za-z0-9_-])(?<![A-Za-z0-9_-]/)(crates/[a-z]+/(src|tests)|src|harness|tests|testkit|bench|benches|config|charts|scripts|docs|crds|examples|fuzz)/[A-Za-z0-9_./*{}-]+'
status=0

# Whether the path (or glob) exists below the directory $2.
exists() {
    # Without its trailing slash: compgen -G echoes a word that ends in '/' unchecked.
    # shellcheck disable=SC2086 # a glob in the docs is expanded on purpose
    (cd "$2" && compgen -G "${1%/}" >/dev/null)
}

while IFS=: read -r file line path; do
    path=${path%[.,:;)]}
    if ! exists "$path" .; then
        echo "$file:$line: names $path, which does not exist"
        status=1
    fi
done < <(grep -onP "$pattern" README.md harness/README.md docs/*.md docs/*/*.md | sort -u)

# The comment of a line: from a `//` at its start or after a blank (so not a URL's `://`).
while IFS=: read -r file line path; do
    path=${path%[.,:;)\`]}
    package=$(dirname "$file")
    while [ "$package" != . ] && [ ! -f "$package/Cargo.toml" ]; do
        package=$(dirname "$package")
    done
    # What git ignores is made, not committed (fuzz/corpus/ by make-seeds): not checked.
    if ! exists "$path" . && ! exists "$path" "$package" && ! git check-ignore -q "$path"; then
        echo "$file:$line: a comment names $path, which does not exist"
        status=1
    fi
done < <(git ls-files -z -- '*.rs' | xargs -0 perl -ne '
    BEGIN { $pattern = shift @ARGV }
    if (m{(?:^\s*|\s)//(.*)}) { my $comment = $1; print "$ARGV:$.:$&\n" while $comment =~ m{$pattern}g }
    close ARGV if eof;' "$pattern" | sort -u)

# A comment's link into a guide (`docs/benchmarks.md#what-does-metrics-cost`) names a heading
# that exists: the anchor GitHub makes of it (lower case, punctuation dropped, blanks as '-').
while IFS=: read -r file line doc anchor; do
    # shellcheck disable=SC2016 # $found and $_ are perl's
    if ! ANCHOR=$anchor perl -CSD -ne 'if (s/^#+\s+//) { chomp; $_ = lc; s/[^\w\- ]//g; s/ /-/g; $found = 1 if $_ eq $ENV{ANCHOR} } END { exit !$found }' "$doc"; then
        echo "$file:$line: a comment links $doc#$anchor, a heading $doc does not have"
        status=1
    fi
done < <(git ls-files -z -- '*.rs' | xargs -0 perl -ne '
    if (m{(?:^\s*|\s)//(.*)}) { my $comment = $1; print "$ARGV:$.:$1:$2\n" while $comment =~ m{(?<![A-Za-z0-9_/-])(docs/[A-Za-z0-9_/-]+\.md)#([A-Za-z0-9_-]+)}g }
    close ARGV if eof;' | sort -u)
# A Rust path a doc comment names (`controller::queue`, `PodView::containers`) in a file rustdoc
# documents is an intra-doc link, so that `cargo doc` with `-D warnings` (.ci/run) fails when it
# goes stale: no such path in backticks outside a link. rustdoc reads no test or bench target
# (tests/, benches/, `#[cfg(test)]` modules named tests.rs), so those are not held to it. A
# name no link can reach (another crate's, one not depended on) is said with its file's path.
while IFS=: read -r file line text; do
    echo "$file:$line: a doc comment names a Rust path that is not an intra-doc link: $text"
    status=1
done < <(git ls-files -z -- 'src/*.rs' 'crates/*/src/*.rs' 'testkit/src/*.rs' 'harness/src/*.rs' 'bench/src/*.rs' \
    | grep -zv '/tests\.rs$' \
    | xargs -0 grep -nP '^\s*//[/!].*(?<!\[)`[A-Za-z_][A-Za-z0-9_]*::[A-Za-z0-9_:]+(\(\))?`(?!\])' || true)
exit $status
