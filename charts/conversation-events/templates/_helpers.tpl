{{/*
Helpers of the conversation-events chart. Every helper is prefixed with the chart name.
One name per deployable: api, worker, scaler, migrations, postgresql, rabbitmq, test.
*/}}

{{- define "conversation-events.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "conversation-events.fullname" -}}
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

{{/* Name of a component's resources: <fullname>-<component>. Call with (list $ "api"). */}}
{{- define "conversation-events.componentName" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" (include "conversation-events.fullname" $root | trunc 52 | trimSuffix "-") (index . 1) }}
{{- end }}

{{- define "conversation-events.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource of a component. Call with (list $ "api"). */}}
{{- define "conversation-events.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ include "conversation-events.chart" $root }}
{{ include "conversation-events.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
{{ include "conversation-events.unversionedLabels" $root }}
{{- end }}

{{/*
Labels of the pod templates of the bundled PostgreSQL and RabbitMQ: the standard ones without
helm.sh/chart and app.kubernetes.io/version, which change with every chart release. A changed
pod template restarts a StatefulSet's pod, and for these that is a database or broker outage.
Call with (list $ "postgresql").
*/}}
{{- define "conversation-events.statefulPodLabels" -}}
{{ include "conversation-events.selectorLabels" . }}
{{ include "conversation-events.unversionedLabels" (index . 0) }}
{{- end }}

{{- define "conversation-events.unversionedLabels" -}}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "conversation-events.name" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels: name, instance and component, so no two components ever select each other's pods. */}}
{{- define "conversation-events.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "conversation-events.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Image reference of an app component. Call with (list $ .Values.api.image). */}}
{{- define "conversation-events.image" -}}
{{- $root := index . 0 }}
{{- $image := index . 1 }}
{{- $tag := $image.tag | default $root.Values.image.tag | default $root.Chart.AppVersion }}
{{- printf "%s:%s" $image.repository $tag }}
{{- end }}

{{- define "conversation-events.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "conversation-events.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Secret holding the app credentials: the user's existingSecret or the chart's own. */}}
{{- define "conversation-events.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "conversation-events.fullname" .) }}
{{- end }}

{{- define "conversation-events.configMapName" -}}
{{- include "conversation-events.componentName" (list . "config") }}
{{- end }}

{{/* True ("true") when the KEDA objects render instead of the bundled scaler. */}}
{{- define "conversation-events.kedaEnabled" -}}
{{- if and .Values.autoscaling.enabled (or (.Capabilities.APIVersions.Has "keda.sh/v1alpha1") .Values.autoscaling.keda.force) }}true{{ end }}
{{- end }}

{{- define "conversation-events.scalerEnabled" -}}
{{- if and .Values.autoscaling.enabled (not (include "conversation-events.kedaEnabled" .)) }}true{{ end }}
{{- end }}

{{/* Where the app finds PostgreSQL and RabbitMQ. */}}
{{- define "conversation-events.postgresqlHost" -}}
{{- if .Values.postgresql.enabled }}
{{- include "conversation-events.componentName" (list . "postgresql") }}
{{- else }}
{{- required "externalDatabase.host is required when postgresql.enabled is false" .Values.externalDatabase.host }}
{{- end }}
{{- end }}

{{- define "conversation-events.rabbitmqHost" -}}
{{- if .Values.rabbitmq.enabled }}
{{- include "conversation-events.componentName" (list . "rabbitmq") }}
{{- else }}
{{- required "externalRabbitmq.host is required when rabbitmq.enabled is false" .Values.externalRabbitmq.host }}
{{- end }}
{{- end }}

{{- define "conversation-events.rabbitmqVhost" -}}
{{- if .Values.rabbitmq.enabled }}{{ .Values.rabbitmq.vhost }}{{ else }}{{ .Values.externalRabbitmq.vhost }}{{ end }}
{{- end }}

{{/*
Base URL of RabbitMQ's management API, without credentials: where every process applies the
queue policy (CE_MANAGEMENT_URL), the scaler's CE_SCALER_MANAGEMENT_URL and KEDA's host. The
bundled broker's Service is named with its namespace, as the KEDA operator resolves names from
its own namespace.
*/}}
{{- define "conversation-events.managementUrl" -}}
{{- if .Values.rabbitmq.enabled }}
{{- printf "http://%s.%s.svc:15672" (include "conversation-events.rabbitmqHost" .) .Release.Namespace }}
{{- else }}
{{- required "externalRabbitmq.managementUrl is required: the queue policy (dead-lettering, delivery limit) is applied through it" .Values.externalRabbitmq.managementUrl | trimSuffix "/" }}
{{- end }}
{{- end }}

{{/* Hook events of the migration Job: the bundled PostgreSQL exists only after install. */}}
{{- define "conversation-events.migrationHooks" -}}
{{- if .Values.postgresql.enabled }}post-install,pre-upgrade{{ else }}pre-install,pre-upgrade{{ end }}
{{- end }}

{{/* Non-secret settings shared by every process (CE_*), as a YAML map. */}}
{{- define "conversation-events.configData" -}}
CE_ENVIRONMENT: {{ .Values.config.environment | quote }}
CE_EXCHANGE_NAME: {{ .Values.config.exchangeName | quote }}
CE_QUEUE_NAME: {{ .Values.config.queueName | quote }}
CE_MAX_ATTEMPTS: {{ .Values.config.maxAttempts | int64 | quote }}
CE_DELIVERY_LIMIT: {{ .Values.config.deliveryLimit | int64 | quote }}
CE_MANAGEMENT_URL: {{ include "conversation-events.managementUrl" . | quote }}
CE_TIMEZONE: {{ .Values.config.timezone | quote }}
CE_LOG_LEVEL: {{ .Values.config.logLevel | quote }}
{{- end }}

{{/* checksum/config and checksum/secret annotations of the app pods. */}}
{{- define "conversation-events.checksums" -}}
checksum/config: {{ include "conversation-events.configData" . | sha256sum }}
checksum/secret: {{ toJson (list .Values.secrets .Values.externalDatabase .Values.externalRabbitmq .Values.postgresql.auth .Values.rabbitmq.auth .Values.rabbitmq.vhost) | sha256sum }}
{{- end }}

{{/* Credentials every app process reads from the Secret. */}}
{{- define "conversation-events.secretEnv" -}}
- name: CE_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "conversation-events.secretName" . }}
      key: database-url
- name: CE_AMQP_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "conversation-events.secretName" . }}
      key: amqp-url
{{- if and (not .Values.rabbitmq.enabled) .Values.externalRabbitmq.tls.caSecret }}
- name: SSL_CERT_FILE
  value: /etc/conversation-events/rabbitmq-ca/ca.crt
{{- end }}
{{- end }}

{{/* Volumes every app pod mounts: a writable /tmp and the optional CA bundles. */}}
{{- define "conversation-events.appVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if and (not .Values.postgresql.enabled) .Values.externalDatabase.caSecret }}
- name: postgresql-ca
  secret:
    secretName: {{ .Values.externalDatabase.caSecret }}
{{- end }}
{{- if and (not .Values.rabbitmq.enabled) .Values.externalRabbitmq.tls.caSecret }}
- name: rabbitmq-ca
  secret:
    secretName: {{ .Values.externalRabbitmq.tls.caSecret }}
{{- end }}
{{- end }}

{{- define "conversation-events.appVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if and (not .Values.postgresql.enabled) .Values.externalDatabase.caSecret }}
- name: postgresql-ca
  mountPath: /etc/conversation-events/postgresql-ca
  readOnly: true
{{- end }}
{{- if and (not .Values.rabbitmq.enabled) .Values.externalRabbitmq.tls.caSecret }}
- name: rabbitmq-ca
  mountPath: /etc/conversation-events/rabbitmq-ca
  readOnly: true
{{- end }}
{{- end }}

{{/* Pod-level settings shared by the app pods. */}}
{{- define "conversation-events.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* Scheduling fields of a pod. Call with a values block holding nodeSelector/tolerations/affinity. */}}
{{- define "conversation-events.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Container security context of the bundled PostgreSQL and RabbitMQ (their user comes from the pod). */}}
{{- define "conversation-events.dataContainerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Secret and key holding the bundled PostgreSQL's / RabbitMQ's password. */}}
{{- define "conversation-events.postgresqlSecretName" -}}
{{- .Values.secrets.existingSecret | default (include "conversation-events.componentName" (list . "postgresql")) }}
{{- end }}

{{- define "conversation-events.rabbitmqSecretName" -}}
{{- .Values.secrets.existingSecret | default (include "conversation-events.componentName" (list . "rabbitmq")) }}
{{- end }}

{{/* A Kubernetes memory quantity (Ki/Mi/Gi/Ti or plain bytes) in bytes; empty if not understood. */}}
{{- define "conversation-events.bytes" -}}
{{- $q := toString . }}
{{- $n := regexFind "^[0-9]+" $q }}
{{- $unit := trimPrefix $n $q }}
{{- $factors := dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "K" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 }}
{{- if and $n (hasKey $factors $unit) }}{{ mul (int64 $n) (get $factors $unit) }}{{ end }}
{{- end }}

{{/* NetworkPolicy peer selecting this release's pods of the given components. Call with (list $ "api" "worker"). */}}
{{- define "conversation-events.podsOf" -}}
{{- $root := index . 0 -}}
podSelector:
  matchLabels:
    app.kubernetes.io/name: {{ include "conversation-events.name" $root }}
    app.kubernetes.io/instance: {{ $root.Release.Name }}
  matchExpressions:
    - key: app.kubernetes.io/component
      operator: In
      values: {{ toJson (rest .) }}
{{- end }}

{{/* Checks across values that the schema cannot express; rendered (as nothing) by configmap.yaml. */}}
{{- define "conversation-events.validate" -}}
{{- $as := .Values.autoscaling }}
{{- if and $as.enabled (lt (int $as.maxReplicas) (int $as.minReplicas)) }}
{{- fail "autoscaling.maxReplicas must be at least autoscaling.minReplicas" }}
{{- end }}
{{- if and (not .Values.secrets.existingSecret) (not .Values.rabbitmq.enabled) (not .Values.externalRabbitmq.username) }}
{{- fail "externalRabbitmq.username is required with an external RabbitMQ (or use secrets.existingSecret)" }}
{{- end }}
{{- $_ := include "conversation-events.postgresqlHost" . }}
{{- $_ := include "conversation-events.rabbitmqHost" . }}
{{- $_ := include "conversation-events.managementUrl" . }}
{{- end }}

{{/*
One URL component (user, password, database, vhost) percent-encoded. urlquery form-encodes: a
space becomes '+', which URL userinfo and paths read as a literal plus. It turns a literal '+'
into %2B first, so every '+' left afterwards stands for a space.
*/}}
{{- define "conversation-events.urlEncode" -}}
{{- urlquery . | replace "+" "%20" }}
{{- end }}

{{/* A number as plain decimal text: YAML numbers arrive as floats, which print as 1e+06. */}}
{{- define "conversation-events.number" -}}
{{- if eq (float64 (int64 .)) (float64 .) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- end }}

{{/* Idle-first scale-in: "scaler" when the built-in scaler keeps the deletion costs, "own" when
the chart runs the deletion-cost Deployment (KEDA, or no autoscaling), empty when off. */}}
{{- define "conversation-events.deletionCost" -}}
{{- if .Values.worker.deletionCost.enabled }}
{{- if include "conversation-events.scalerEnabled" . }}scaler{{ else }}own{{ end }}
{{- end }}
{{- end }}

{{/* The worker pods' label selector as a string (k=v,k=v), for the deletion-cost loop. */}}
{{- define "conversation-events.workerSelector" -}}
{{- $pairs := list }}
{{- range $k, $v := include "conversation-events.selectorLabels" (list . "worker") | fromYaml }}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/* Environment of the deletion-cost loop, in the scaler or in its own pod. */}}
{{- define "conversation-events.deletionCostEnv" -}}
- name: CE_SCALER_DELETION_COST
  value: "true"
- name: CE_SCALER_DELETION_COST_INTERVAL_S
  value: {{ .Values.worker.deletionCost.intervalSeconds | int64 | quote }}
- name: CE_SCALER_WORKER_SELECTOR
  value: {{ include "conversation-events.workerSelector" . | quote }}
- name: CE_SCALER_WORKER_HTTP_PORT
  value: {{ .Values.worker.httpPort | int64 | quote }}
{{- end }}
