{{/* Chart name, truncated to the DNS label limit. */}}
{{- define "usage-collector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, plus the chart name unless the release already contains it. */}}
{{- define "usage-collector.fullname" -}}
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

{{- define "usage-collector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "usage-collector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "usage-collector.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "usage-collector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: collector
app.kubernetes.io/part-of: iot-usage-metering
{{- end }}

{{- define "usage-collector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "usage-collector.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "usage-collector.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "usage-collector.secretName" -}}
{{- printf "%s-secrets" (include "usage-collector.fullname" .) }}
{{- end }}

{{/* The database URL when the chart stores it: the given one, or SQLite on the PVC. */}}
{{- define "usage-collector.databaseUrl" -}}
{{- if .Values.database.url }}
{{- .Values.database.url }}
{{- else if eq .Values.database.driver "sqlite" }}
{{- print "sqlite+aiosqlite:////var/lib/usage-collector/usage.db" }}
{{- end }}
{{- end }}

{{- define "usage-collector.createSecret" -}}
{{- if or (not .Values.database.existingSecret) (and (not .Values.stripe.existingSecret) (or .Values.stripe.apiKey .Values.stripe.webhookSecret)) }}true{{ end }}
{{- end }}

{{- define "usage-collector.migrationJob" -}}
{{- if and .Values.migrations.enabled (eq .Values.database.driver "postgresql") }}true{{ end }}
{{- end }}

{{/*
The secret files `usage-collector --secrets-dir` reads, named like the variables in lower case.
One projected volume combines the chart's Secret and any existing ones.
*/}}
{{- define "usage-collector.secretsVolume" -}}
- name: secrets
  projected:
    defaultMode: 0440
    sources:
      - secret:
          name: {{ .Values.database.existingSecret | default (include "usage-collector.secretName" .) }}
          items:
            - key: {{ ternary .Values.database.existingSecretKey "database-url" (ne .Values.database.existingSecret "") }}
              path: collector_database_url
      {{- if .Values.stripe.existingSecret }}
      - secret:
          name: {{ .Values.stripe.existingSecret }}
          items:
            - key: {{ .Values.stripe.apiKeyKey }}
              path: collector_stripe_api_key
            - key: {{ .Values.stripe.webhookSecretKey }}
              path: collector_stripe_webhook_secret
      {{- else if or .Values.stripe.apiKey .Values.stripe.webhookSecret }}
      - secret:
          name: {{ include "usage-collector.secretName" . }}
          items:
            {{- if .Values.stripe.apiKey }}
            - key: stripe-api-key
              path: collector_stripe_api_key
            {{- end }}
            {{- if .Values.stripe.webhookSecret }}
            - key: stripe-webhook-secret
              path: collector_stripe_webhook_secret
            {{- end }}
      {{- end }}
{{- end }}

{{- define "usage-collector.env" -}}
- name: COLLECTOR_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: COLLECTOR_STRIPE_MODE
  value: {{ .Values.stripe.mode | quote }}
{{- with .Values.stripe.apiBase }}
- name: COLLECTOR_STRIPE_API_BASE
  value: {{ . | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.stripe.maxRps) }}
- name: COLLECTOR_STRIPE_MAX_RPS
  value: {{ .Values.stripe.maxRps | toString | quote }}
{{- end }}
{{- if not .Values.stripe.coalesce }}
- name: COLLECTOR_STRIPE_COALESCE
  value: "false"
{{- end }}
{{- if not (kindIs "invalid" .Values.stripe.concurrency) }}
- name: COLLECTOR_STRIPE_CONCURRENCY
  value: {{ .Values.stripe.concurrency | int | toString | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.stripe.periodRefresh) }}
- name: COLLECTOR_STRIPE_PERIOD_REFRESH
  value: {{ .Values.stripe.periodRefresh | toString | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.stripe.ageWarningDays) }}
- name: COLLECTOR_STRIPE_AGE_WARNING_DAYS
  value: {{ .Values.stripe.ageWarningDays | toString | quote }}
{{- end }}
{{- if .Values.auth.disabled }}
- name: COLLECTOR_AUTH_DISABLED
  value: "true"
{{- end }}
{{- if not (kindIs "invalid" .Values.auth.rateLimitRps) }}
- name: COLLECTOR_RATE_LIMIT_RPS
  value: {{ .Values.auth.rateLimitRps | toString | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.auth.rateLimitBurst) }}
- name: COLLECTOR_RATE_LIMIT_BURST
  value: {{ .Values.auth.rateLimitBurst | int | toString | quote }}
{{- end }}
{{- with .Values.extraMetrics }}
- name: COLLECTOR_EXTRA_METRICS
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{- define "usage-collector.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "usage-collector.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Cross-field rules, for installs that skip the schema. */}}
{{- define "usage-collector.validate" -}}
{{- if eq .Values.database.driver "sqlite" }}
{{- if or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled (not .Values.persistence.enabled) }}
{{- fail "database.driver sqlite allows only replicaCount: 1 with persistence.enabled: true and no autoscaling; use database.driver: postgresql" }}
{{- end }}
{{- end }}
{{- if and (eq .Values.database.driver "postgresql") (not .Values.database.url) (not .Values.database.existingSecret) }}
{{- fail "database.driver postgresql needs database.existingSecret (preferred) or database.url" }}
{{- end }}
{{- if and (eq .Values.database.driver "postgresql") (hasPrefix "sqlite" .Values.database.url) }}
{{- fail "database.url is a SQLite URL but database.driver is postgresql" }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (not (kindIs "invalid" .Values.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable)) }}
{{- fail "podDisruptionBudget: set only one of minAvailable and maxUnavailable (set the other to null)" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- end }}
