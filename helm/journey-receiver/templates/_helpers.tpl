{{/* Names, labels and the rendered receiver.yaml. */}}

{{- define "journey-receiver.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "journey-receiver.fullname" -}}
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

{{- define "journey-receiver.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "journey-receiver.labels" -}}
helm.sh/chart: {{ include "journey-receiver.chart" . }}
{{ include "journey-receiver.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "journey-receiver.selectorLabels" -}}
app.kubernetes.io/name: {{ include "journey-receiver.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: receiver
{{- end }}

{{- define "journey-receiver.redis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "journey-receiver.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end }}

{{- define "journey-receiver.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "journey-receiver.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "journey-receiver.secretName" -}}
{{- if .Values.secrets.create }}
{{- include "journey-receiver.fullname" . }}
{{- else }}
{{- required "secrets.existingSecret: name the Secret holding WEBHOOK_TOKEN etc. (or set secrets.create for a trial)" .Values.secrets.existingSecret }}
{{- end }}
{{- end }}

{{- define "journey-receiver.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "journey-receiver.redisHost" -}}
{{- printf "%s-redis" (include "journey-receiver.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
receiver.yaml: the chart's defaults, then .Values.config deep-merged over them, then the
keys the chart itself depends on (port, drain, journeys_file). Secrets appear only as
${VAR} references to environment variables filled from the Secret.
*/}}
{{- define "journey-receiver.receiverConfig" -}}
{{- $stopping := add .Values.shutdown.preStopSleepSeconds .Values.shutdown.drainSeconds }}
{{- if ge (int $stopping) (int .Values.terminationGracePeriodSeconds) }}
{{- fail (printf "shutdown.preStopSleepSeconds (%v) + shutdown.drainSeconds (%v) must be below terminationGracePeriodSeconds (%v): the grace period counts from the preStop hook, and the pod is killed when it ends" .Values.shutdown.preStopSleepSeconds .Values.shutdown.drainSeconds .Values.terminationGracePeriodSeconds) }}
{{- end }}
{{- $storeUrl := "${REDIS_URL}" }}
{{- if .Values.redis.enabled }}
{{- $storeUrl = printf "redis://%s:6379/0" (include "journey-receiver.redisHost" .) }}
{{- end }}
{{- $sinks := dict "log" (dict "enabled" .Values.sinks.log.enabled) }}
{{- if .Values.sinks.pagerduty.enabled }}
{{- $_ := set $sinks "pagerduty" (merge (dict "routing_key" "${PD_ROUTING_KEY}") (deepCopy .Values.sinks.pagerduty.settings)) }}
{{- end }}
{{- if .Values.sinks.slack.enabled }}
{{- $_ := set $sinks "slack" (merge (dict "token" "${SLACK_TOKEN}") (deepCopy .Values.sinks.slack.settings)) }}
{{- end }}
{{- if .Values.sinks.jira.enabled }}
{{- $_ := set $sinks "jira" (merge (dict "token" "${JIRA_TOKEN}") (deepCopy .Values.sinks.jira.settings)) }}
{{- end }}
{{- $defaults := dict
  "server" (dict "keepalive_timeout" "120s" "auth" (dict "bearer_tokens" (list "${WEBHOOK_TOKEN}")))
  "store" (dict "url" $storeUrl "key_prefix" "jr")
  "routing" (deepCopy .Values.routing)
  "sinks" $sinks
}}
{{- $cfg := mergeOverwrite $defaults (deepCopy .Values.config) }}
{{- if and (hasPrefix "memory://" (toString $cfg.store.url)) (or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1)) }}
{{- fail (printf "config.store.url memory:// keeps the incidents inside each pod: with %s Alertmanager's sends would be split between pods that each page on their own; set replicaCount: 1 (and autoscaling.enabled false) to try it out, or use Redis (redis.enabled, or REDIS_URL in the Secret)" (ternary "autoscaling" (printf "replicaCount %v" .Values.replicaCount) .Values.autoscaling.enabled)) }}
{{- end }}
{{- $_ := set $cfg.server "host" "0.0.0.0" }}
{{- $_ := set $cfg.server "port" 9095 }}
{{- $scheduler := get $cfg "scheduler" | default dict }}
{{- $_ := set $scheduler "drain" (printf "%ds" (int .Values.shutdown.drainSeconds)) }}
{{- $_ := set $cfg "scheduler" $scheduler }}
{{- $_ := set $cfg "journeys_file" "journeys.yaml" }}
{{- toYaml $cfg }}
{{- end }}

{{/* Environment of the receiver and its config check: every secret from a Secret. */}}
{{- define "journey-receiver.env" -}}
{{- $secret := include "journey-receiver.secretName" . -}}
- name: WEBHOOK_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ .Values.secrets.keys.webhookToken }}}
{{- if not .Values.redis.enabled }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ .Values.secrets.keys.redisUrl }}}
{{- end }}
{{- if .Values.sinks.pagerduty.enabled }}
- name: PD_ROUTING_KEY
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ .Values.secrets.keys.pagerdutyRoutingKey }}}
{{- end }}
{{- if .Values.sinks.slack.enabled }}
- name: SLACK_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ .Values.secrets.keys.slackToken }}}
{{- end }}
{{- if .Values.sinks.jira.enabled }}
- name: JIRA_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ .Values.secrets.keys.jiraToken }}}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Mounts of the receiver and its config check: the same files for both. */}}
{{- define "journey-receiver.volumeMounts" -}}
- name: config
  mountPath: /etc/journey-receiver
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}
