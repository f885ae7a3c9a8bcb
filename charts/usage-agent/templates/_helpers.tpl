{{/*
A name the API server accepts: lower case, anything but [a-z0-9-] made "-", at most 63
characters, "-" trimmed at both ends. Helm makes a dependency's alias the chart's name, so the
seed's umbrella (alias billingExporter) would otherwise name objects "initech-billingExporter".
*/}}
{{- define "usage-agent.dnsLabel" -}}
{{- regexReplaceAll "[^a-z0-9-]+" (lower .) "-" | trunc 63 | trimAll "-" }}
{{- end }}

{{/* Chart name for the app.kubernetes.io/name label (a label value), truncated to 63. */}}
{{- define "usage-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimAll "-_." }}
{{- end }}

{{/*
Full name: the release name, plus the chart name unless the release already contains it; a
DNS-1123 label (see usage-agent.dnsLabel), so it can name every object.
*/}}
{{- define "usage-agent.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- include "usage-agent.dnsLabel" .Values.fullnameOverride }}
{{- else }}
{{- $name := include "usage-agent.dnsLabel" (default .Chart.Name .Values.nameOverride) }}
{{- $release := include "usage-agent.dnsLabel" .Release.Name }}
{{- if contains $name $release }}
{{- $release }}
{{- else }}
{{- include "usage-agent.dnsLabel" (printf "%s-%s" $release $name) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The metrics Service: a DNS-1035 label, so the full name leaves room for "-metrics". */}}
{{- define "usage-agent.metricsServiceName" -}}
{{- printf "%s-metrics" (include "usage-agent.fullname" . | trunc 55 | trimSuffix "-") }}
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

{{/*
A seed variable in `env` wins over the chart value it stands for, like ENABLE_USAGE_REPORTING
and COLLECTION_INTERVAL: BILLING_API_URL over collector.url, CUSTOMER_ID over customerId and
INSTANCE_ID over instanceId. The chart renders the agent's own variable from it, once.
*/}}
{{- define "usage-agent.seedVariables" -}}
{{- list "ENABLE_USAGE_REPORTING" "COLLECTION_INTERVAL" "BILLING_API_URL" "CUSTOMER_ID" "INSTANCE_ID" | toJson }}
{{- end }}

{{- define "usage-agent.collectorUrl" -}}
{{- if hasKey .Values.env "BILLING_API_URL" }}{{ get .Values.env "BILLING_API_URL" }}{{ else }}{{ .Values.collector.url }}{{ end }}
{{- end }}

{{- define "usage-agent.customerId" -}}
{{- if hasKey .Values.env "CUSTOMER_ID" }}{{ get .Values.env "CUSTOMER_ID" }}{{ else }}{{ .Values.customerId }}{{ end }}
{{- end }}

{{- define "usage-agent.instanceId" -}}
{{- if hasKey .Values.env "INSTANCE_ID" }}{{ get .Values.env "INSTANCE_ID" }}{{ else }}{{ .Values.instanceId }}{{ end }}
{{- end }}

{{/*
The variables the chart sets itself, and what to set instead. The same name in `env` is
refused: the container would get it twice, and which one the agent sees would depend on order.
*/}}
{{- define "usage-agent.chartVariables" -}}
AGENT_ENABLED: set enabled (or the seed's env.ENABLE_USAGE_REPORTING)
AGENT_INTERVAL: set interval (or the seed's env.COLLECTION_INTERVAL)
AGENT_COLLECTOR_URL: set collector.url (or the seed's env.BILLING_API_URL)
AGENT_COLLECTOR_TOKEN: set collector.existingSecret
AGENT_CUSTOMER_ID: set customerId (or the seed's env.CUSTOMER_ID)
AGENT_INSTANCE_ID: set instanceId (or the seed's env.INSTANCE_ID)
AGENT_PROMETHEUS_URL: set prometheus.url
AGENT_MQTT_MESSAGES_QUERY: set prometheus.queries.mqttMessages
AGENT_STORAGE_BYTES_QUERY: set prometheus.queries.storageBytes
AGENT_API_REQUESTS_QUERY: set prometheus.queries.apiRequests
AGENT_DEVICE_API_URL: set deviceApi.url
AGENT_DEVICE_API_TOKEN: set deviceApi.existingSecret
AGENT_METRICS_URL: set metricsUrl
AGENT_STATE_DIR: it is the spool volume (spool.persistence)
AGENT_METRICS_PORT: set metrics.port
AGENT_LOG_LEVEL: set logLevel
AGENT_JITTER: set jitter
AGENT_QUERY_OFFSET: set queryOffset
AGENT_SCRAPE_INTERVAL: set scrapeInterval
AGENT_MAX_CATCHUP: set maxCatchup
AGENT_PARTIAL_AFTER: set partialAfter
AGENT_SPOOL_MAX_REPORTS: set spool.maxReports
AGENT_LEADER_ELECTION: set leaderElection.enabled
AGENT_LEASE_NAME: set leaderElection.leaseName
AGENT_LEASE_DURATION: set leaderElection.leaseDuration
AGENT_LEASE_RENEW: set leaderElection.renewPeriod
AGENT_NAMESPACE: it is always the pod's namespace
AGENT_POD_NAME: it is always the pod's name
AGENT_CA_BUNDLE: set collector.tls.caBundleConfigMap
AGENT_INSECURE_SKIP_VERIFY: set collector.tls.insecureSkipVerify
{{- end }}

{{/*
Milliseconds in a duration as usage-agent.duration renders it ("1h30m", "3600000ms", "0.5s"),
summed part by part the way the agent's parse_duration reads it.
*/}}
{{- define "usage-agent.milliseconds" -}}
{{- $scale := dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000 }}
{{- $total := 0.0 }}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)?(ms|d|h|m|s)" (lower .) -1 }}
{{- $unit := regexFind "(ms|d|h|m|s)$" . }}
{{- $total = addf $total (mulf (trimSuffix $unit . | float64) (get $scale $unit)) }}
{{- end }}
{{- $total }}
{{- end }}

{{/* Durations the agent would refuse at start-up (a crash loop), refused at install instead. */}}
{{- define "usage-agent.validateDurations" -}}
{{- $seed := hasKey .Values.env "COLLECTION_INTERVAL" }}
{{- $source := ternary "env.COLLECTION_INTERVAL" "interval" $seed }}
{{- $given := ternary (get .Values.env "COLLECTION_INTERVAL") .Values.interval $seed }}
{{- if lt (include "usage-agent.milliseconds" (include "usage-agent.interval" .) | float64) 1000.0 }}
{{- fail (printf "%s %s: the report interval must be at least 1s, the agent's minimum (AGENT_INTERVAL); a bare number is milliseconds. Use e.g. 30s, 5m or 1h" $source (toJson $given)) }}
{{- end }}
{{- $positive := dict "scrapeInterval" .Values.scrapeInterval "leaderElection.leaseDuration" .Values.leaderElection.leaseDuration "leaderElection.renewPeriod" .Values.leaderElection.renewPeriod }}
{{- range $field, $value := $positive }}
{{- if and $value (eq (include "usage-agent.milliseconds" (include "usage-agent.duration" $value) | float64) 0.0) }}
{{- fail (printf "%s %s: must be longer than 0s" $field (toJson $value)) }}
{{- end }}
{{- end }}
{{- if and .Values.maxCatchup (gt (include "usage-agent.milliseconds" (include "usage-agent.duration" .Values.maxCatchup) | float64) 3024000000.0) }}
{{- fail (printf "maxCatchup %s: must be at most 35d, the oldest usage Stripe accepts" (toJson .Values.maxCatchup)) }}
{{- end }}
{{- end }}

{{/*
The pods' topology spread. null (the default): with more than one replica, spread evenly across
zones, then nodes, as a preference (ScheduleAnyway), so a small cluster still schedules them.
[]: none. A list: as given; an item without labelSelector gets the agent pods' selector.
*/}}
{{- define "usage-agent.topologySpreadConstraints" -}}
{{- $selector := dict "matchLabels" (include "usage-agent.selectorLabels" . | fromYaml) }}
{{- $constraints := list }}
{{- if kindIs "invalid" .Values.topologySpreadConstraints }}
{{- if gt (int .Values.replicaCount) 1 }}
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
{{- fail "podDisruptionBudget: set only one of minAvailable and maxUnavailable; with neither, maxUnavailable is 1" }}
{{- end }}
{{- $service := include "usage-agent.metricsServiceName" . }}
{{- if not (regexMatch "^[a-z]" $service) }}
{{- fail (printf "the metrics Service name %q must start with a letter (Service names are DNS-1035 labels): use a release name or fullnameOverride that starts with a letter" $service) }}
{{- end }}
{{- $chartVariables := include "usage-agent.chartVariables" . | fromYaml }}
{{- range $name, $_ := .Values.env }}
{{- if hasKey $chartVariables $name }}
{{- fail (printf "env.%s: the chart sets %s itself: %s" $name $name (get $chartVariables $name)) }}
{{- end }}
{{- end }}
{{- include "usage-agent.validateDurations" . }}
{{- end }}
