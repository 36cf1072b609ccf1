"""Minimal JSON schemas of the non-core kinds sidecar-watch ships (their CRDs are not available
offline): the fields we use, with their types, and no unknown fields at the levels we write, so
that a typo in a template fails scripts/check-deploy.sh instead of being pruned by the API server."""
from __future__ import annotations

_DURATION = r"^([0-9]+(ms|s|m|h|d|w|y))+$"

_RELABEL = {"type": "array", "items": {"type": "object", "additionalProperties": False, "properties": {
    "action": {"enum": ["replace", "keep", "drop", "keepequal", "dropequal", "hashmod", "labelmap",
                        "labeldrop", "labelkeep", "lowercase", "uppercase",
                        "Replace", "Keep", "Drop", "HashMod", "LabelMap", "LabelDrop", "LabelKeep"]},
    "sourceLabels": {"type": "array", "items": {"type": "string"}}, "separator": {"type": "string"},
    "targetLabel": {"type": "string"}, "regex": {"type": "string"}, "modulus": {"type": "integer"},
    "replacement": {"type": "string"}}}}

_SECRET_KEY = {"type": "object", "required": ["name", "key"], "additionalProperties": False,
               "properties": {"name": {"type": "string"}, "key": {"type": "string"}, "optional": {"type": "boolean"}}}

_TLS = {"type": "object", "additionalProperties": False, "properties": {
    "insecureSkipVerify": {"type": "boolean"}, "serverName": {"type": "string"},
    "ca": {"type": "object", "additionalProperties": False, "properties": {
        "secret": _SECRET_KEY, "configMap": _SECRET_KEY}},
    "caFile": {"type": "string"}, "certFile": {"type": "string"}, "keyFile": {"type": "string"}}}

_AUTHORIZATION = {"type": "object", "additionalProperties": False, "properties": {
    "type": {"type": "string"}, "credentials": _SECRET_KEY, "credentialsFile": {"type": "string"}}}

_ENDPOINT_COMMON = {
    "port": {"type": "string"}, "targetPort": {}, "path": {"type": "string"},
    "scheme": {"enum": ["http", "https"]},
    "interval": {"type": "string", "pattern": _DURATION},
    "scrapeTimeout": {"type": "string", "pattern": _DURATION},
    "honorLabels": {"type": "boolean"}, "honorTimestamps": {"type": "boolean"},
    "relabelings": _RELABEL, "metricRelabelings": _RELABEL,
    "tlsConfig": _TLS, "authorization": _AUTHORIZATION,
}

_SELECTORS = {
    "jobLabel": {"type": "string"},
    "sampleLimit": {"type": "integer", "minimum": 0},
    "namespaceSelector": {"type": "object", "additionalProperties": False, "properties": {
        "any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}}},
    "selector": {"type": "object", "additionalProperties": False, "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {"type": "array"}}},
}


def _monitor(endpoints_key: str, extra_endpoint: dict) -> dict:
    return {"type": "object", "required": ["spec"], "properties": {"spec": {
        "type": "object", "required": ["selector", endpoints_key], "additionalProperties": False,
        "properties": {**_SELECTORS, endpoints_key: {"type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False,
            "not": {"required": ["authorization", "bearerTokenFile"]},
            "properties": {**_ENDPOINT_COMMON, **extra_endpoint}}}}}}}


_RULES = {"type": "object", "required": ["spec"], "properties": {"spec": {
    "type": "object", "required": ["groups"], "additionalProperties": False,
    "properties": {"groups": {"type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["name", "rules"], "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "interval": {"type": "string", "pattern": _DURATION},
            "rules": {"type": "array", "items": {
                "type": "object", "required": ["expr"], "additionalProperties": False,
                "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                "properties": {
                    "alert": {"type": "string"}, "record": {"type": "string"},
                    "expr": {"type": "string", "minLength": 1},
                    "for": {"type": "string", "pattern": _DURATION},
                    "keep_firing_for": {"type": "string", "pattern": _DURATION},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}}}}}}}}}}

_META_NS = {"type": "object", "required": ["name", "namespace"]}

# AlertmanagerConfig (monitoring.coreos.com/v1alpha1): the fields the chart writes. Receivers
# come from values as the user writes them (any integration), so only their name is checked.
_AM_MATCHERS = {"type": "array", "items": {
    "type": "object", "required": ["name"], "additionalProperties": False, "properties": {
        "name": {"type": "string", "minLength": 1}, "value": {"type": "string"},
        "matchType": {"enum": ["=", "!=", "=~", "!~"]}, "regex": {"type": "boolean"}}}}
_AM_ROUTE_FIELDS = {
    "receiver": {"type": "string"}, "matchers": _AM_MATCHERS, "continue": {"type": "boolean"},
    "groupBy": {"type": "array", "items": {"type": "string"}},
    "groupWait": {"type": "string", "pattern": _DURATION},
    "groupInterval": {"type": "string", "pattern": _DURATION},
    "repeatInterval": {"type": "string", "pattern": _DURATION}}
_AM_CONFIG = {"type": "object", "required": ["spec"], "properties": {
    "metadata": _META_NS,
    "spec": {"type": "object", "additionalProperties": False, "properties": {
        "route": {"type": "object", "additionalProperties": False, "properties": {
            **_AM_ROUTE_FIELDS,
            "routes": {"type": "array", "items": {
                "type": "object", "additionalProperties": False, "properties": _AM_ROUTE_FIELDS}}}},
        "receivers": {"type": "array", "items": {
            "type": "object", "required": ["name"], "properties": {"name": {"type": "string", "minLength": 1}}}},
        "inhibitRules": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "properties": {
                "sourceMatch": _AM_MATCHERS, "targetMatch": _AM_MATCHERS,
                "equal": {"type": "array", "items": {"type": "string"}}}}}}}}}

_CERTIFICATE = {"type": "object", "required": ["spec"], "properties": {
    "metadata": _META_NS,
    "spec": {"type": "object", "required": ["secretName", "issuerRef"], "additionalProperties": False, "properties": {
        "secretName": {"type": "string"}, "commonName": {"type": "string"},
        "dnsNames": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "duration": {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"},
        "renewBefore": {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"},
        "issuerRef": {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
            "name": {"type": "string"}, "kind": {"enum": ["Issuer", "ClusterIssuer"]}, "group": {"type": "string"}}}}}}}

_ISSUER = {"type": "object", "required": ["spec"], "properties": {
    "metadata": _META_NS,
    "spec": {"type": "object", "minProperties": 1, "maxProperties": 1, "properties": {
        "selfSigned": {"type": "object"}, "ca": {"type": "object"}, "acme": {"type": "object"},
        "vault": {"type": "object"}}, "additionalProperties": False}}}

EXTRA_SCHEMAS: dict[tuple[str, str], dict] = {
    ("monitoring.coreos.com", "ServiceMonitor"): _monitor("endpoints", {"bearerTokenFile": {"type": "string"}}),
    ("monitoring.coreos.com", "PodMonitor"): _monitor("podMetricsEndpoints", {}),
    ("monitoring.coreos.com", "PrometheusRule"): _RULES,
    ("monitoring.coreos.com", "AlertmanagerConfig"): _AM_CONFIG,
    ("cert-manager.io", "Certificate"): _CERTIFICATE,
    ("cert-manager.io", "Issuer"): _ISSUER,
}
