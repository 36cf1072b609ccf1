#!/usr/bin/env python3
"""Offline checks of sidecar-watch's deployment files, used by scripts/check-deploy.sh.

Each subcommand prints what it checked and exits non-zero with a message naming the file and
the problem. Run from the repository root.

  copies [--fix]          crds/ == config/crd/ == charts/sidecar-watch/crds/, and the chart's
                          files/ copies of the PrometheusRule, the dashboard and the
                          ValidatingAdmissionPolicy
  validate FILE LABEL     validate every object of a rendered multi-document YAML stream
  rules OUTDIR            write the PrometheusRules' .spec (per-workload and per-Pod forms) + the
                          promtool tests into OUTDIR; every alert name of crates/engine/src/alert.rs
                          (the workload alerts with their own checks) has a rule in both forms
  dashboard OUTFILE       wrap every dashboard PromQL expression into a rule file for promtool
  chart-rules FILE [--per-pod]  the chart's rendered PrometheusRule == config's (default values;
                          --per-pod: prometheusRule.perPodAlerts=true, the per-Pod group)
  chart-static            every .Values.x.y used by a template exists in values.yaml
  dockerfile              the runtime stage copies what `cargo build --release` produces
"""
from __future__ import annotations

import filecmp
import json
import re
import shutil
import sys
import tomllib
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))

from checks_common import (  # noqa: E402 - the modules beside this script
    CHART,
    CRD_NAMES,
    DASH_SRC,
    OPERATOR_ALERTS,
    PER_POD_RULE_SRC,
    ROOT,
    RULE_SRC,
    SIDECAR_ALERTS,
    VAP_SRC,
    fail,
    finish,
    ok,
    rel,
)
from checks_promql import cmd_chart_rules, cmd_dashboard, cmd_rules  # noqa: E402
from checks_validate import cmd_validate  # noqa: E402


# --------------------------------------------------------------------------------- copies
def cmd_copies(fix: bool) -> None:
    pairs: list[tuple[Path, Path]] = []
    for name in CRD_NAMES:
        src = ROOT / "crds" / name
        if not src.is_file():
            fail(f"{rel(src)} is missing (it is the output of `sidecar-watch crd`)")
            continue
        pairs += [(src, ROOT / "config/crd" / name), (src, CHART / "crds" / name)]
    pairs += [(RULE_SRC, CHART / "files/prometheusrule.yaml"),
              (PER_POD_RULE_SRC, CHART / "files/prometheusrule-per-pod.yaml"),
              (DASH_SRC, CHART / "files/sidecar-watch-dashboard.json"),
              (VAP_SRC, CHART / "files/validatingadmissionpolicy.yaml")]
    for src, dst in pairs:
        same = dst.is_file() and filecmp.cmp(src, dst, shallow=False)
        if same:
            ok(f"{rel(dst)} == {rel(src)}")
        elif fix:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            ok(f"copied {rel(src)} -> {rel(dst)}")
        else:
            fail(f"{rel(dst)} differs from {rel(src)} (run scripts/check-deploy.sh --fix)")
    # nothing else lurking in the CRD directories
    for d in (ROOT / "config/crd", CHART / "crds"):
        for f in sorted(d.glob("*.yaml")):
            if f.name not in CRD_NAMES and f.name != "kustomization.yaml":
                fail(f"unexpected file {rel(f)} (not in crds/)")
    finish()

# --------------------------------------------------------------------------- chart-static
def cmd_chart_static() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    for k in ("apiVersion", "name", "version", "appVersion"):
        if not chart.get(k):
            fail(f"charts/sidecar-watch/Chart.yaml: no {k}")
    if chart.get("apiVersion") != "v2":
        fail("charts/sidecar-watch/Chart.yaml: apiVersion must be v2 (Helm 3)")
    required = ["image.repository", "image.tag", "image.pullPolicy", "replicaCount", "leaderElection.enabled",
                "resources", "watchNamespaces", "logLevel", "logFormat", "serviceMonitor.enabled",
                "prometheusRule.enabled", "prometheusRule.additionalLabels", "networkPolicy.enabled",
                "podAnnotations", "nodeSelector", "tolerations", "affinity", "sharding.enabled",
                "grafanaDashboard.enabled"]
    for a in SIDECAR_ALERTS + OPERATOR_ALERTS:
        required += [f"prometheusRule.alerts.{a}.severity", f"prometheusRule.alerts.{a}.for"]

    def has(path: str) -> bool:
        node = values
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    for r in required:
        if not has(r):
            fail(f"charts/sidecar-watch/values.yaml: no {r}")
    n = 0
    for t in sorted((CHART / "templates").glob("*")):
        text = t.read_text()
        if t.suffix == ".yaml" and "{{" not in text:
            list(yaml.safe_load_all(text))  # a generator: parsing happens only when consumed
        if text.count("{{") != text.count("}}"):
            fail(f"{rel(t)}: unbalanced {{{{ }}}}")
        for m in re.finditer(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", text):
            n += 1
            if not has(m.group(1)[1:]):
                fail(f"{rel(t)}: .Values{m.group(1)} is not in values.yaml")
    ok(f"Chart.yaml, values.yaml: {len(required)} required values present; {n} .Values references resolve")
    finish()


# ----------------------------------------------------------------------------- dockerfile
def cmd_dockerfile() -> None:
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    pkg = cargo["package"]["name"]
    bins = [b["name"] for b in cargo.get("bin", [])] or ([pkg] if (ROOT / "src/main.rs").is_file() else [])
    if not bins:
        fail("Cargo.toml: the root package has no binary")
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)  # join continuation lines
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
    stages: list[dict] = []
    global_args: dict[str, str] = {}
    for l in lines:
        word, _, rest = l.partition(" ")
        word = word.upper()
        if word == "FROM":
            m = re.match(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            stages.append({"image": m.group(1), "name": (m.group(2) or "").lower(), "args": {}, "env": {},
                           "workdir": "/", "runs": [], "copies": [], "entrypoint": None, "cmd": None, "user": None})
            continue
        if word == "ARG":
            k, _, v = rest.partition("=")
            (stages[-1]["args"] if stages else global_args)[k.strip()] = v.strip()
            continue
        if not stages:
            continue
        st = stages[-1]
        if word == "WORKDIR":
            st["workdir"] = rest if rest.startswith("/") else st["workdir"].rstrip("/") + "/" + rest
        elif word == "ENV":
            for k, v in re.findall(r"(\w+)=(\S+)", rest):
                st["env"][k] = v
        elif word == "RUN":
            st["runs"].append(rest)
        elif word == "COPY":
            st["copies"].append(rest)
        elif word in ("ENTRYPOINT", "CMD"):
            st[word.lower()] = json.loads(rest) if rest.startswith("[") else rest
        elif word == "USER":
            st["user"] = rest

    def expand(s: str, st: dict) -> str:
        env = {**global_args, **st["args"], **st["env"]}
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), m.group(0)), s)

    if len(stages) < 2:
        fail("Dockerfile: expected a multi-stage build (builder + runtime)")
        finish()
    runtime = stages[-1]
    if runtime["runs"]:
        fail("Dockerfile: the runtime stage must not RUN anything (no shell at runtime)")
    if not re.search(r"distroless/(static|cc)|^scratch$", runtime["image"]):
        fail(f"Dockerfile: runtime image {runtime['image']} is neither distroless nor scratch")
    if (runtime["user"] or "").split(":")[0] not in ("65532", "nonroot"):
        fail(f"Dockerfile: runtime USER must be 65532, got {runtime['user']}")
    ep = runtime["entrypoint"]
    cmd = runtime["cmd"]
    full = (ep if isinstance(ep, list) else [ep]) + (cmd if isinstance(cmd, list) else ([cmd] if cmd else []))
    if full[:2] != ["/sidecar-watch", "run"]:
        fail(f"Dockerfile: ENTRYPOINT/CMD must be [\"/sidecar-watch\"] [\"run\"], got {full}")
    copied = None
    for c in runtime["copies"]:
        m = re.match(r"--from=(\S+)\s+(\S+)\s+(\S+)$", c)
        if m and m.group(3) == "/sidecar-watch":
            copied = (m.group(1).lower(), expand(m.group(2), runtime))
    if not copied:
        fail("Dockerfile: the runtime stage does not COPY --from=<builder> ... /sidecar-watch")
        finish()
    builder = next((s for s in stages if s["name"] == copied[0]), None)
    if builder is None:
        fail(f"Dockerfile: COPY --from={copied[0]} names no stage")
        finish()
    build = next((expand(r, builder) for r in builder["runs"] if "cargo build" in r), None)
    if not build or "--release" not in build:
        fail("Dockerfile: the builder stage has no `cargo build --release`")
        finish()
    m = re.search(r"--target[= ](\S+)", build)
    target = m.group(1) if m else None
    m = re.search(r"--bin[= ](\S+)", build)
    if m and m.group(1) not in bins:
        fail(f"Dockerfile: cargo build --bin {m.group(1)}, but Cargo.toml's binaries are {bins}")
    tdir = builder["env"].get("CARGO_TARGET_DIR") or (builder["workdir"].rstrip("/") + "/target")
    want = f"{tdir}/{target + '/' if target else ''}release/{bins[0] if bins else '?'}"
    if copied[1] != want:
        fail(f"Dockerfile: runtime copies {copied[1]}, but `{build[build.index('cargo build'):].split('&&')[0].strip()}` in WORKDIR "
             f"{builder['workdir']} produces {want}")
    else:
        ok(f"Dockerfile: runtime copies {want} (binary `{bins[0]}` of package `{pkg}`, target {target}) to /sidecar-watch")
    if target and "musl" in target and "distroless/cc" in runtime["image"]:
        ok("note: musl binary on distroless/cc works but distroless/static suffices")
    if target and "gnu" in target and ("static" in runtime["image"] or runtime["image"] == "scratch"):
        fail("Dockerfile: a glibc (gnu) binary needs distroless/cc, not static/scratch")
    di = ROOT / ".dockerignore"
    if not di.is_file() or not re.search(r"^/?target/?$", di.read_text(), re.M):
        fail(".dockerignore must exclude target/")
    finish()


def main() -> None:
    args = sys.argv[1:]
    if not args:
        print(__doc__)
        sys.exit(2)
    cmd, rest = args[0], args[1:]
    if cmd == "copies":
        cmd_copies("--fix" in rest)
    elif cmd == "validate":
        cmd_validate(rest[0], rest[1])
    elif cmd == "rules":
        cmd_rules(rest[0])
    elif cmd == "chart-rules":
        cmd_chart_rules(rest[0], per_pod="--per-pod" in rest[1:])
    elif cmd == "dashboard":
        cmd_dashboard(rest[0])
    elif cmd == "chart-static":
        cmd_chart_static()
    elif cmd == "dockerfile":
        cmd_dockerfile()
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
