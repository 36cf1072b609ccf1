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

{{- define "sidecar-watch.labels" -}}
helm.sh/chart: {{ include "sidecar-watch.chart" . }}
{{ include "sidecar-watch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sidecar-watch
{{- end }}

{{- define "sidecar-watch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sidecar-watch.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sidecar-watch.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Leader election is on unless disabled or sharded (a StatefulSet ordinal is unique). */}}
{{- define "sidecar-watch.leaderElect" -}}
{{- if .Values.leaderElection.enabled }}true{{ else }}false{{ end }}
{{- end }}

{{- define "sidecar-watch.leaseName" -}}
{{- default (include "sidecar-watch.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}
