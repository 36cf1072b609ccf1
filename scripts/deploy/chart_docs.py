#!/usr/bin/env python3
"""Generates charts/sidecar-watch/README.md from values.yaml: every key documented by a
"# -- text" comment (continued by the following "#" lines) becomes a row with its type and
default. `--check` (scripts/check-deploy.sh) fails when the README is not current or a leaf
value has no comment; `--write` regenerates it.

  python3 scripts/deploy/chart_docs.py --check|--write
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "sidecar-watch"
HEADER = """# sidecar-watch Helm chart

{description}

![sidecar-watch](icon.svg)

Generated from `values.yaml` by `python3 scripts/deploy/chart_docs.py --write`; do not edit by
hand (`scripts/check-deploy.sh` fails when it is out of date). `values.schema.json` rejects
unknown keys and bad values at `helm install`/`helm template` time.

## Install

```sh
helm install sidecar-watch oci://ghcr.io/sidecar-watch/charts/sidecar-watch \\
  --version {version} --namespace sidecar-watch-system --create-namespace
```

See `docs/install.md` in the repository for Prometheus access to the secure `/metrics`
endpoint, the kustomize alternative and tenant delegation.

## Values

| Key | Type | Default | Description |
| --- | --- | --- | --- |
"""


def documented(lines: list[str]) -> list[tuple[str, str]]:
    """(dotted key, description) of every key preceded by a `# --` comment."""
    out: list[tuple[str, str]] = []
    stack: list[tuple[int, str]] = []
    comment: list[str] | None = None
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("# --"):
            comment = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if comment is not None:
                comment.append(stripped[1:].strip())
            continue
        m = re.match(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*):", line)
        if not m:
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group(2)))
        if comment is not None:
            out.append((".".join(k for _, k in stack), " ".join(comment)))
        comment = None
    return out


def lookup(values: dict, dotted: str):
    node = values
    for part in dotted.split("."):
        node = node[part]
    return node


def type_of(v) -> str:
    return {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "object"}.get(type(v), "?")


def leaves(values, prefix=""):
    """Dotted paths of every scalar, list or empty map (what a user sets)."""
    if isinstance(values, dict) and values:
        for k, v in values.items():
            yield from leaves(v, f"{prefix}.{k}" if prefix else k)
    else:
        yield prefix


def render() -> tuple[str, list[str]]:
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    docs = documented(text.splitlines())
    rows = []
    for key, desc in docs:
        v = lookup(values, key)
        default = json.dumps(v, separators=(", ", ": ")).replace("|", "\\|")
        rows.append(f"| `{key}` | {type_of(v)} | `{default}` | {desc.replace('|', chr(92) + '|')} |")
    keys = [k for k, _ in docs]
    undocumented = [leaf for leaf in leaves(values)
                    if not any(leaf == k or leaf.startswith(k + ".") for k in keys)]
    readme = HEADER.format(description=chart["description"], version=chart["version"]) + "\n".join(rows) + "\n"
    return readme, undocumented


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "--check"
    readme, undocumented = render()
    target = CHART / "README.md"
    problems = [f"charts/sidecar-watch/values.yaml: {k} has no '# --' comment" for k in undocumented]
    if mode == "--write":
        target.write_text(readme)
        print(f"  wrote {target.relative_to(CHART.parents[1])}")
    elif not target.is_file() or target.read_text() != readme:
        problems.append("charts/sidecar-watch/README.md is not current: python3 scripts/deploy/chart_docs.py --write")
    for p in problems:
        print(f"  FAIL: {p}")
    if problems:
        sys.exit(1)
    print(f"  ok: charts/sidecar-watch/README.md documents {readme.count(chr(10) + '| `')} values and is current")


if __name__ == "__main__":
    main()
