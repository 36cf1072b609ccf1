"""checks.py `validate`: the CRDs' structural schemas as JSON Schema, every object of a rendered
stream validated, and the workload and RBAC rules of a deploy.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from schemas import EXTRA_SCHEMAS  # minimal schemas of non-core kinds
from checks_common import K8S_VERSION, ROOT, fail, finish, ok, rel


# ------------------------------------------------------------------------------- validate
def load_crd_schemas() -> dict[tuple[str, str, str], dict]:
    """(group, version, kind) -> openAPIV3Schema, from the project's CRDs."""
    out = {}
    for d in (ROOT / "crds", ROOT / "config/crd"):
        for f in sorted(d.glob("*.yaml")):
            for doc in yaml.safe_load_all(f.read_text()):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for v in spec["versions"]:
                    key = (spec["group"], v["name"], spec["names"]["kind"])
                    out.setdefault(key, {"schema": v["schema"]["openAPIV3Schema"],
                                         "scope": spec["scope"], "file": rel(f)})
        if out:
            break
    return out


def structural_to_jsonschema(s: dict) -> dict:
    """Kubernetes structural schema -> JSON schema: unknown fields are errors (the API server
    prunes them silently, which hides typos in samples), x-kubernetes-* honoured where it matters."""
    s = copy.deepcopy(s)

    def walk(n):
        if not isinstance(n, dict):
            return n
        if n.get("x-kubernetes-int-or-string"):
            n.pop("type", None)
            n["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if "properties" in n:
            for k, v in n["properties"].items():
                n["properties"][k] = walk(v)
            if not n.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in n:
                n["additionalProperties"] = False
        if isinstance(n.get("additionalProperties"), dict):
            n["additionalProperties"] = walk(n["additionalProperties"])
        if "items" in n:
            n["items"] = walk(n["items"])
        for k in ("allOf", "anyOf", "oneOf"):
            if k in n:
                n[k] = [walk(x) for x in n[k]]
        if n.get("nullable"):
            t = n.get("type")
            if isinstance(t, str):
                n["type"] = [t, "null"]
        for k in list(n):
            if k.startswith("x-kubernetes-"):
                del n[k]
        return n

    s = walk(s)
    # apiVersion/kind/metadata are implicit in every CRD schema; metadata is validated by the
    # API server, not by the CRD schema
    props = s.setdefault("properties", {})
    props["metadata"] = {"type": "object"}
    props.setdefault("apiVersion", {"type": "string"})
    props.setdefault("kind", {"type": "string"})
    return s

RESTRICTED_CONTAINER = {
    "runAsNonRoot": True, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
}


def check_workload(doc: dict, where: str) -> None:
    pod = doc["spec"]["template"]["spec"]
    psc = pod.get("securityContext") or {}
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        sc = c.get("securityContext") or {}
        for k, v in RESTRICTED_CONTAINER.items():
            if sc.get(k, psc.get(k)) != v:
                fail(f"{where}: container {c['name']} securityContext.{k} must be {v}")
        if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
            fail(f"{where}: container {c['name']} must drop ALL capabilities")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp != "RuntimeDefault":
            fail(f"{where}: container {c['name']} seccompProfile must be RuntimeDefault")
        if sc.get("runAsUser", psc.get("runAsUser")) != 65532:
            fail(f"{where}: container {c['name']} must run as UID 65532")
        env = {e["name"]: e for e in c.get("env", [])}
        for name, path in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
            if (((env.get(name) or {}).get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath") != path:
                fail(f"{where}: container {c['name']} needs env {name} from the downward API ({path})")
        probes = {p: (c.get(p) or {}).get("httpGet", {}).get("path") for p in ("livenessProbe", "readinessProbe")}
        if probes != {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}:
            fail(f"{where}: container {c['name']} probes must be /healthz (liveness) and /readyz (readiness), got {probes}")
        if not (c.get("resources") or {}).get("requests"):
            fail(f"{where}: container {c['name']} has no resource requests")
        if c.get("args", [None])[0] != "run":
            fail(f"{where}: container {c['name']} args must start with the `run` subcommand")


FORBIDDEN_RBAC = {"secrets", "*"}


def check_rbac(doc: dict, where: str) -> None:
    for r in doc.get("rules", []):
        res = set(r.get("resources", []))
        verbs = set(r.get("verbs", []))
        if res & FORBIDDEN_RBAC or "*" in verbs or "*" in r.get("apiGroups", []):
            fail(f"{where}: wildcard or Secrets access in rule {r}")
        if "" in r.get("apiGroups", []) and "pods" in res and verbs - {"get", "list", "watch"}:
            fail(f"{where}: Pod write access in rule {r}")


def cmd_validate(path: str, label: str) -> None:
    import jsonschema
    import kubernetes_validate

    crds = load_crd_schemas()
    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    if not docs:
        fail(f"{label}: rendered nothing")
    counts: dict[str, int] = {}
    for d in docs:
        kind, api = d.get("kind"), d.get("apiVersion", "")
        name = (d.get("metadata") or {}).get("name")
        where = f"{label}: {kind}/{name}"
        group, _, version = api.rpartition("/")
        try:
            if (group, version, kind) in crds:
                info = crds[(group, version, kind)]
                schema = structural_to_jsonschema(info["schema"])
                errs = sorted(jsonschema.Draft7Validator(schema).iter_errors(d), key=lambda e: list(e.path))
                for e in errs:
                    fail(f"{where}: {'.'.join(map(str, e.path)) or '<root>'}: {e.message} (schema: {info['file']})")
                ns = (d.get("metadata") or {}).get("namespace")
                if info["scope"] == "Namespaced" and not ns:
                    fail(f"{where}: namespaced kind without metadata.namespace")
                if info["scope"] == "Cluster" and ns:
                    fail(f"{where}: cluster-scoped kind with metadata.namespace")
                how = "project CRD schema"
            elif group in ("monitoring.coreos.com", "cert-manager.io"):
                schema = EXTRA_SCHEMAS.get((group, kind))
                if schema is None:
                    fail(f"{where}: no schema for {api} {kind}")
                    continue
                for e in jsonschema.Draft7Validator(schema).iter_errors(d):
                    fail(f"{where}: {'.'.join(map(str, e.path)) or '<root>'}: {e.message} (minimal {kind} schema)")
                how = f"minimal {group} schema"
            elif group == "sidecarwatch.io":
                fail(f"{where}: no CRD in crds/ defines {api} {kind}")
                continue
            else:
                kubernetes_validate.validate(d, K8S_VERSION, strict=True)
                how = f"kubernetes-validate {K8S_VERSION} strict"
        except kubernetes_validate.ValidationError as e:
            fail(f"{where}: {'.'.join(map(str, e.path))}: {e.message}")
            continue
        except Exception as e:  # noqa: BLE001 - report anything else as a failure too
            fail(f"{where}: {type(e).__name__}: {e}")
            continue
        if kind in ("Deployment", "StatefulSet"):
            check_workload(d, where)
        if kind in ("ClusterRole", "Role"):
            check_rbac(d, where)
        counts[f"{kind} ({how})"] = counts.get(f"{kind} ({how})", 0) + 1
    for k, n in sorted(counts.items()):
        ok(f"{label}: {n} x {k}")
    finish()
