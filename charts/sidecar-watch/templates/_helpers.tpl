{{/* Chart name. */}}
{{- define "sidecar-watch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-name unless it already contains the chart name. */}}
{{- define "sidecar-watch.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sidecar-watch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sidecar-watch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sidecar-watch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Every object's labels: helm.sh/chart, the full app.kubernetes.io/* set, commonLabels. */}}
{{- define "sidecar-watch.labels" -}}
helm.sh/chart: {{ include "sidecar-watch.chart" . }}
{{ include "sidecar-watch.podLabels" . }}
{{- end }}

{{/* Pod template labels: the selector labels plus version, managed-by, part-of and
     commonLabels (no helm.sh/chart: a chart bump alone should not roll the Pods). */}}
{{- define "sidecar-watch.podLabels" -}}
{{ include "sidecar-watch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sidecar-watch
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "sidecar-watch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sidecar-watch.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* registry/repository, then @digest when set (it wins), else :tag (default appVersion). */}}
{{- define "sidecar-watch.image" -}}
{{- $repo := .Values.image.repository }}
{{- with .Values.image.registry }}{{ $repo = printf "%s/%s" . $repo }}{{ end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* global.imagePullSecrets (names or {name: ...}) then imagePullSecrets, as a list of {name}. */}}
{{- define "sidecar-watch.imagePullSecrets" -}}
{{- $secrets := list }}
{{- range (concat (default list .Values.global.imagePullSecrets) (default list .Values.imagePullSecrets)) }}
{{- if kindIs "string" . }}{{ $secrets = append $secrets (dict "name" .) }}{{ else }}{{ $secrets = append $secrets . }}{{ end }}
{{- end }}
{{- if $secrets }}{{ toYaml $secrets }}{{ end }}
{{- end }}

{{/* Leader election is on unless disabled. Sharding keeps it on: each shard holds its own
     Lease, <leaseName>-<index>, so two Pods of one ordinal never both lead. */}}
{{- define "sidecar-watch.leaderElect" -}}
{{- if .Values.leaderElection.enabled }}true{{ else }}false{{ end }}
{{- end }}

{{- define "sidecar-watch.leaseName" -}}
{{- default (include "sidecar-watch.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* The Leases to look at, as `kubectl get lease` arguments: one per shard when sharded. */}}
{{- define "sidecar-watch.leaseNames" -}}
{{- $base := include "sidecar-watch.leaseName" . }}
{{- if .Values.sharding.enabled }}
{{- $names := list }}
{{- range $i := until (int .Values.replicaCount) }}{{ $names = append $names (printf "%s-%d" $base $i) }}{{ end }}
{{- join " " $names }}
{{- else }}
{{- $base }}
{{- end }}
{{- end }}

{{/* Secret of the cert-manager serving certificate, and where it is mounted. */}}
{{- define "sidecar-watch.metricsCertSecret" -}}
{{- include "sidecar-watch.fullname" . }}-metrics-tls
{{- end }}
{{- define "sidecar-watch.metricsCertDir" -}}
/etc/sidecar-watch/metrics-certs
{{- end }}

{{/* The scrape endpoint settings shared by the ServiceMonitor and the PodMonitor (after port). */}}
{{- define "sidecar-watch.scrapeEndpoint" -}}
path: /metrics
scheme: {{ if .Values.metrics.secure }}https{{ else }}http{{ end }}
interval: {{ .Values.serviceMonitor.interval }}
scrapeTimeout: {{ .Values.serviceMonitor.scrapeTimeout }}
# sidecar_* series carry the watched Pod's namespace/pod/container labels: keep them.
honorLabels: true
relabelings:
  # The operator self-alerts select job="sidecar-watch".
  - action: replace
    targetLabel: job
    replacement: sidecar-watch
  # The shard of the target ("0" when not sharded): the operator alerts are per shard.
  - action: replace
    sourceLabels: [__meta_kubernetes_pod_label_apps_kubernetes_io_pod_index]
    regex: ""
    targetLabel: shard
    replacement: "0"
  - action: replace
    sourceLabels: [__meta_kubernetes_pod_label_apps_kubernetes_io_pod_index]
    regex: (.+)
    targetLabel: shard
    replacement: $1
  {{- with .Values.serviceMonitor.relabelings }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .Values.serviceMonitor.metricRelabelings }}
metricRelabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .Values.metrics.secure }}
tlsConfig:
  {{- if .Values.serviceMonitor.tlsConfig }}
  {{- toYaml .Values.serviceMonitor.tlsConfig | nindent 2 }}
  {{- else if .Values.metrics.certManager.enabled }}
  serverName: {{ include "sidecar-watch.fullname" . }}-metrics.{{ .Release.Namespace }}.svc
  ca:
    secret:
      name: {{ include "sidecar-watch.metricsCertSecret" . }}
      key: ca.crt
  {{- else }}
  # The operator's certificate is self-signed, made in memory at start: nothing to verify it
  # against. Enable metrics.certManager for a verified one.
  insecureSkipVerify: true
  {{- end }}
{{- end }}
{{- end }}

{{/* https-metrics when secure, http-metrics otherwise. */}}
{{- define "sidecar-watch.metricsPortName" -}}
{{- if .Values.metrics.secure }}https-metrics{{ else }}http-metrics{{ end }}
{{- end }}
