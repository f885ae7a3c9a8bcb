{{/* Chart name, truncated to the DNS label limit. */}}
{{- define "usage-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, plus the chart name unless the release already contains it. */}}
{{- define "usage-agent.fullname" -}}
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

{{- define "usage-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "usage-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "usage-agent.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "usage-agent.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: agent
app.kubernetes.io/part-of: iot-usage-metering
{{- end }}

{{- define "usage-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "usage-agent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "usage-agent.leaseName" -}}
{{- default (include "usage-agent.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
A duration value as a string the agent reads. A bare number in the chart's values is the seed's
milliseconds, but the agent reads a bare AGENT_* number as seconds, so it gets an "ms" suffix.
Helm reads numbers in values as floats, so 3600000 would print as 3.6e+06 without int64.
*/}}
{{- define "usage-agent.duration" -}}
{{- if kindIs "string" . }}
{{- if regexMatch "^[0-9]+$" . }}{{ . }}ms{{ else }}{{ . }}{{ end }}
{{- else }}{{ int64 . }}ms{{ end }}
{{- end }}

{{/* The effective switch: the seed's ENABLE_USAGE_REPORTING in env wins over `enabled`. */}}
{{- define "usage-agent.enabled" -}}
{{- if hasKey .Values.env "ENABLE_USAGE_REPORTING" }}
{{- has (lower (get .Values.env "ENABLE_USAGE_REPORTING")) (list "true" "1") }}
{{- else }}
{{- .Values.enabled }}
{{- end }}
{{- end }}

{{/* The effective interval: the seed's COLLECTION_INTERVAL in env wins over `interval`. */}}
{{- define "usage-agent.interval" -}}
{{- if hasKey .Values.env "COLLECTION_INTERVAL" }}
{{- include "usage-agent.duration" (get .Values.env "COLLECTION_INTERVAL") }}
{{- else }}
{{- include "usage-agent.duration" .Values.interval }}
{{- end }}
{{- end }}

{{- define "usage-agent.secretName" -}}
{{- printf "%s-secrets" (include "usage-agent.fullname" .) }}
{{- end }}

{{/* Whether the chart creates a Secret: only for tokens given inline. */}}
{{- define "usage-agent.createSecret" -}}
{{- if or (and .Values.collector.token (not .Values.collector.existingSecret)) (and .Values.deviceApi.token (not .Values.deviceApi.existingSecret)) }}true{{ end }}
{{- end }}

{{/* The agent talks to the Kubernetes API only for leader election or namespace identity. */}}
{{- define "usage-agent.needsKubeApi" -}}
{{- if or .Values.leaderElection.enabled .Values.identity.fromNamespace }}true{{ end }}
{{- end }}

{{- define "usage-agent.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Cross-field rules the schema cannot say with a clear message. */}}
{{- define "usage-agent.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled: true, or two agents would both report" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) .Values.spool.persistence.enabled (not .Values.spool.persistence.existingClaim) (not (has "ReadWriteMany" .Values.spool.persistence.accessModes)) }}
{{- fail "spool.persistence with replicaCount > 1 needs spool.persistence.accessModes to include ReadWriteMany" }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (not (kindIs "invalid" .Values.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable)) }}
{{- fail "podDisruptionBudget: set only one of minAvailable and maxUnavailable (set the other to null)" }}
{{- end }}
{{- end }}
