{{/*
A name the API server accepts: lower case, anything but [a-z0-9-] made "-", at most 63
characters, "-" trimmed at both ends (an alias or override may hold capitals, "_" or ".").
*/}}
{{- define "usage-collector.dnsLabel" -}}
{{- regexReplaceAll "[^a-z0-9-]+" (lower .) "-" | trunc 63 | trimAll "-" }}
{{- end }}

{{/* Chart name for the app.kubernetes.io/name label (a label value), truncated to 63. */}}
{{- define "usage-collector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimAll "-_." }}
{{- end }}

{{/*
Full name: the release name, plus the chart name unless the release already contains it; a
DNS-1123 label (see usage-collector.dnsLabel), so it can name every object.
*/}}
{{- define "usage-collector.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- include "usage-collector.dnsLabel" .Values.fullnameOverride }}
{{- else }}
{{- $name := include "usage-collector.dnsLabel" (default .Chart.Name .Values.nameOverride) }}
{{- $release := include "usage-collector.dnsLabel" .Release.Name }}
{{- if contains $name $release }}
{{- $release }}
{{- else }}
{{- include "usage-collector.dnsLabel" (printf "%s-%s" $release $name) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The serving pods. The component is part of the selector so that the migration Job's pods
(component: migration) are never selected by the Deployment, the Service, the PDB or the HPA.
*/}}
{{- define "usage-collector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "usage-collector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: collector
{{- end }}

{{/* Labels every object carries, without the component. */}}
{{- define "usage-collector.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "usage-collector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: iot-usage-metering
{{- end }}

{{- define "usage-collector.labels" -}}
{{ include "usage-collector.commonLabels" . }}
app.kubernetes.io/component: collector
{{- end }}

{{/* The migration Job: at most 63 characters, since Kubernetes puts it in a pod label. */}}
{{- define "usage-collector.migrationJobName" -}}
{{- printf "%s-migrate" (include "usage-collector.fullname" . | trunc 55 | trimSuffix "-") }}
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
Where the secret files are mounted. COLLECTOR_SECRETS_DIR points every `usage-collector` command
there, `kubectl exec` ones included, so none needs --secrets-dir.
*/}}
{{- define "usage-collector.consoleSecretName" -}}
{{ include "usage-collector.fullname" . }}-console
{{- end }}

{{- define "usage-collector.secretsDir" -}}
/etc/usage-collector/secrets
{{- end }}

{{/*
The secret files COLLECTOR_SECRETS_DIR names, named like the variables in lower case. One
projected volume combines the chart's Secret and any existing ones. The webhook signing secret
is optional: an existing Stripe Secret without it still mounts, and webhooks are then refused.
*/}}
{{- define "usage-collector.secretsVolume" -}}
{{- $root := .root -}}
- name: secrets
  projected:
    defaultMode: 0440
    sources:
      - secret:
          name: {{ $root.Values.database.existingSecret | default (include "usage-collector.secretName" $root) }}
          items:
            - key: {{ ternary $root.Values.database.existingSecretKey "database-url" (ne $root.Values.database.existingSecret "") }}
              path: collector_database_url
      {{- if $root.Values.stripe.existingSecret }}
      - secret:
          name: {{ $root.Values.stripe.existingSecret }}
          items:
            - key: {{ $root.Values.stripe.apiKeyKey }}
              path: collector_stripe_api_key
      - secret:
          name: {{ $root.Values.stripe.existingSecret }}
          optional: true
          items:
            - key: {{ $root.Values.stripe.webhookSecretKey }}
              path: collector_stripe_webhook_secret
      {{- else if or $root.Values.stripe.apiKey $root.Values.stripe.webhookSecret }}
      - secret:
          name: {{ include "usage-collector.secretName" $root }}
          items:
            {{- if $root.Values.stripe.apiKey }}
            - key: stripe-api-key
              path: collector_stripe_api_key
            {{- end }}
            {{- if $root.Values.stripe.webhookSecret }}
            - key: stripe-webhook-secret
              path: collector_stripe_webhook_secret
            {{- end }}
      {{- end }}
      {{- if and .console $root.Values.console.enabled }}
      - secret:
          name: {{ $root.Values.console.existingSecret | default (include "usage-collector.consoleSecretName" $root) }}
          items:
            - key: {{ ternary $root.Values.console.existingSecretKey "console-session-secret" (ne $root.Values.console.existingSecret "") }}
              path: collector_console_session_secret
      {{- end }}
{{- end }}

{{- define "usage-collector.env" -}}
- name: COLLECTOR_SECRETS_DIR
  value: {{ include "usage-collector.secretsDir" . | quote }}
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
{{- if not .Values.console.enabled }}
- name: COLLECTOR_CONSOLE_ENABLED
  value: "false"
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
{{- fail "podDisruptionBudget: set only one of minAvailable and maxUnavailable; with neither, minAvailable is 1" }}
{{- end }}
{{- $service := include "usage-collector.fullname" . }}
{{- if not (regexMatch "^[a-z]" $service) }}
{{- fail (printf "the Service name %q must start with a letter (Service names are DNS-1035 labels): use a release name or fullnameOverride that starts with a letter" $service) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- end }}

{{/*
The serving pods' topology spread. null (the default): with more than one replica or with
autoscaling, spread evenly across zones, then nodes, as a preference (ScheduleAnyway), so a
small cluster still schedules them. []: none. A list: as given; an item without labelSelector
gets the collector pods' selector.
*/}}
{{- define "usage-collector.topologySpreadConstraints" -}}
{{- $selector := dict "matchLabels" (include "usage-collector.selectorLabels" . | fromYaml) }}
{{- $constraints := list }}
{{- if kindIs "invalid" .Values.topologySpreadConstraints }}
{{- if or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled }}
{{- range list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
{{- $constraints = append $constraints (dict "maxSkew" 1 "topologyKey" . "whenUnsatisfiable" "ScheduleAnyway" "labelSelector" $selector) }}
{{- end }}
{{- end }}
{{- else }}
{{- range .Values.topologySpreadConstraints }}
{{- $constraint := deepCopy . }}
{{- if not (hasKey $constraint "labelSelector") }}
{{- $_ := set $constraint "labelSelector" $selector }}
{{- end }}
{{- $constraints = append $constraints $constraint }}
{{- end }}
{{- end }}
{{- with $constraints }}{{ toYaml . }}{{ end }}
{{- end }}

{{/* Seconds as the shortest Prometheus duration: 10800 is 3h, 5400 is 90m. */}}
{{- define "usage-collector.promDuration" -}}
{{- $seconds := int64 . }}
{{- if eq (mod $seconds 3600) 0 }}{{ div $seconds 3600 }}h
{{- else if eq (mod $seconds 60) 0 }}{{ div $seconds 60 }}m
{{- else }}{{ $seconds }}s{{ end }}
{{- end }}
