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

{{/*
Reference of the one app image every component runs (each with its own command):
[registry/]repository, then @digest when set, else :tag (default: the appVersion).
image.registry, else global.imageRegistry.
*/}}
{{- define "conversation-events.image" -}}
{{- include "conversation-events.imageRef" (list . .Values.image (.Values.image.tag | default .Chart.AppVersion)) }}
{{- end }}

{{/*
Image reference: `[registry/]repository` then `@digest` when one is set, else `:tag`. The
registry is the image's own, else global.imageRegistry. Call with (list $ image tag).
*/}}
{{- define "conversation-events.imageRef" -}}
{{- $root := index . 0 }}
{{- $image := index . 1 }}
{{- $registry := $image.registry | default (($root.Values.global).imageRegistry) | default "" | trimSuffix "/" }}
{{- $name := $image.repository }}
{{- if $registry }}{{ $name = printf "%s/%s" $registry $name }}{{ end }}
{{- if $image.digest }}
{{- printf "%s@%s" $name $image.digest }}
{{- else }}
{{- printf "%s:%s" $name (index . 2) }}
{{- end }}
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

{{/* Whether the built-in scaler counts the unpublished events (and so reaches PostgreSQL). */}}
{{- define "conversation-events.countUnpublished" -}}
{{- if and (include "conversation-events.scalerEnabled" .) .Values.autoscaling.countUnpublished }}true{{ end }}
{{- end }}

{{/*
Where the app finds PostgreSQL and RabbitMQ. The bundled servers and the operators' clusters are
named <fullname>-postgresql and <fullname>-rabbitmq; CloudNativePG serves the primary as the
`-rw` Service, the RabbitMQ Cluster Operator every node behind a Service of the cluster's name.
*/}}
{{- define "conversation-events.postgresqlHost" -}}
{{- $name := include "conversation-events.componentName" (list . "postgresql") }}
{{- if eq .Values.postgresql.mode "bundled" }}{{ $name }}
{{- else if eq .Values.postgresql.mode "cloudnativepg" }}{{ $name }}-rw
{{- else }}
{{- required "externalDatabase.host is required with postgresql.mode=external" .Values.externalDatabase.host }}
{{- end }}
{{- end }}

{{- define "conversation-events.rabbitmqHost" -}}
{{- if eq .Values.rabbitmq.mode "external" }}
{{- required "externalRabbitmq.host is required with rabbitmq.mode=external" .Values.externalRabbitmq.host }}
{{- else }}
{{- include "conversation-events.componentName" (list . "rabbitmq") }}
{{- end }}
{{- end }}

{{- define "conversation-events.rabbitmqVhost" -}}
{{- if eq .Values.rabbitmq.mode "external" }}{{ .Values.externalRabbitmq.vhost }}{{ else }}{{ .Values.rabbitmq.vhost }}{{ end }}
{{- end }}

{{/* Secret with `ca.crt` that verifies PostgreSQL: the external one's, CloudNativePG's own CA. */}}
{{- define "conversation-events.postgresqlCaSecret" -}}
{{- if eq .Values.postgresql.mode "cloudnativepg" }}
{{- include "conversation-events.componentName" (list . "postgresql") }}-ca
{{- else if eq .Values.postgresql.mode "external" }}
{{- .Values.externalDatabase.caSecret }}
{{- end }}
{{- end }}

{{- define "conversation-events.rabbitmqCaSecret" -}}
{{- if eq .Values.rabbitmq.mode "external" }}
{{- .Values.externalRabbitmq.tls.caSecret }}
{{- end }}
{{- end }}

{{/* "true" when every process has a broker user of its own (the chart runs the broker). */}}
{{- define "conversation-events.perComponentUsers" -}}
{{- if and .Values.rabbitmq.users.perComponent (ne .Values.rabbitmq.mode "external") (not .Values.secrets.existingSecret) }}true{{ end }}
{{- end }}

{{/* The broker user name of a component, in bundled mode. Call with (list $ "api"). */}}
{{- define "conversation-events.brokerUserName" -}}
{{- printf "%s-%s" (include "conversation-events.fullname" (index . 0)) (index . 1) }}
{{- end }}

{{/*
A component's broker permissions, as a YAML map (tags, configure, write, read), on the
project's exchange and queue names only. The api declares the topology and publishes, but
reads no queue; the worker (and the operator CLI in its pod, which re-publishes and re-creates
the queue) works on every object of the project; the migration step applies the queue policy
through the management API (policymaker) and touches no object; the scaler reads the queue's
counts (monitoring). Call with (list $ "api").
*/}}
{{- define "conversation-events.brokerPermissions" -}}
{{- $v := (index . 0).Values }}
{{- $x := regexQuoteMeta $v.config.exchangeName }}
{{- $q := regexQuoteMeta $v.config.queueName }}
{{- $exchanges := printf "%s|%s\\.dlx" $x $x }}
{{- $queues := printf "%s|%s\\.dead" $q $q }}
{{- $component := index . 1 }}
{{- if eq $component "api" }}
tags: []
configure: {{ printf "^(%s|%s)$" $exchanges $queues | quote }}
write: {{ printf "^(%s|%s)$" $x $queues | quote }}
read: {{ printf "^(%s)$" $exchanges | quote }}
{{- else if eq $component "worker" }}
{{- $all := printf "^(%s|%s|%s\\.migrating)$" $exchanges $queues $q }}
tags: []
configure: {{ $all | quote }}
write: {{ $all | quote }}
read: {{ $all | quote }}
{{- else if eq $component "migrations" }}
tags: [policymaker]
configure: "^$"
write: "^$"
read: "^$"
{{- else if eq $component "scaler" }}
tags: [monitoring]
configure: "^$"
write: "^$"
read: "^$"
{{- end }}
{{- end }}

{{/*
Where a component's broker credentials come from, as a YAML map: `username` (a value) or
`usernameFrom`, and `passwordFrom` ({name, key} of a Secret). Empty when the credentials are in
the AMQP URL of a Secret (secrets.existingSecret, or an external broker's password in values).
Call with (list $ "api").
*/}}
{{- define "conversation-events.brokerCredentials" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
{{- $v := $root.Values }}
{{- $mq := include "conversation-events.componentName" (list $root "rabbitmq") }}
{{- $own := include "conversation-events.perComponentUsers" $root }}
{{- if $v.secrets.existingSecret }}
{{- else if eq $v.rabbitmq.mode "bundled" }}
{{- if $own }}
username: {{ include "conversation-events.brokerUserName" (list $root $component) | quote }}
passwordFrom: {name: {{ $mq }}, key: {{ $component }}-password}
{{- else }}
username: {{ $v.rabbitmq.auth.username | quote }}
passwordFrom: {name: {{ $mq }}, key: rabbitmq-password}
{{- end }}
{{- else if eq $v.rabbitmq.mode "operator" }}
{{- /* The topology operator's User writes <user>-user-credentials; the cluster operator its default-user. */}}
{{- $secret := ternary (printf "%s-%s-user-credentials" $mq $component) (printf "%s-default-user" $mq) (eq $own "true") }}
usernameFrom: {name: {{ $secret }}, key: username}
passwordFrom: {name: {{ $secret }}, key: password}
{{- else if $v.externalRabbitmq.existingSecret }}
{{- $e := $v.externalRabbitmq }}
{{- if $e.usernameKey }}
usernameFrom: {name: {{ $e.existingSecret }}, key: {{ $e.usernameKey }}}
{{- else }}
username: {{ required "externalRabbitmq.username is required (or externalRabbitmq.usernameKey)" $e.username | quote }}
{{- end }}
passwordFrom: {name: {{ $e.existingSecret }}, key: {{ $e.passwordKey }}}
{{- end }}
{{- end }}

{{/* The AMQP URL without credentials; one URL per host of an external cluster, comma-separated. */}}
{{- define "conversation-events.amqpUrlWithoutCredentials" -}}
{{- $external := eq .Values.rabbitmq.mode "external" }}
{{- $scheme := ternary "amqps" "amqp" (and $external .Values.externalRabbitmq.tls.enabled) }}
{{- $port := ternary .Values.externalRabbitmq.port 5672 $external }}
{{- $vhost := include "conversation-events.urlEncode" (include "conversation-events.rabbitmqVhost" .) }}
{{- $urls := list }}
{{- range $host := splitList "," (include "conversation-events.rabbitmqHost" .) }}
{{- $urls = append $urls (printf "%s://%s:%v/%s" $scheme (trim $host) $port $vhost) }}
{{- end }}
{{- join "," $urls }}
{{- end }}

{{/*
Database credentials kept out of the chart: a YAML map as brokerCredentials', or empty when the
database URL (with its password) is in a Secret of the chart or secrets.existingSecret.
*/}}
{{- define "conversation-events.databaseCredentials" -}}
{{- $v := .Values }}
{{- if $v.secrets.existingSecret }}
{{- else if eq $v.postgresql.mode "cloudnativepg" }}
{{- /* CloudNativePG's Secret of the application user, the database's owner. */}}
{{- $secret := printf "%s-app" (include "conversation-events.componentName" (list . "postgresql")) }}
usernameFrom: {name: {{ $secret }}, key: username}
passwordFrom: {name: {{ $secret }}, key: password}
{{- else if and (eq $v.postgresql.mode "external") $v.externalDatabase.existingSecret }}
{{- $e := $v.externalDatabase }}
{{- if $e.usernameKey }}
usernameFrom: {name: {{ $e.existingSecret }}, key: {{ $e.usernameKey }}}
{{- end }}
passwordFrom: {name: {{ $e.existingSecret }}, key: {{ $e.passwordKey }}}
{{- end }}
{{- end }}

{{/* The database URL: without a password when databaseCredentials has one. */}}
{{- define "conversation-events.databaseUrl" -}}
{{- $root := index . 0 }}
{{- $password := index . 1 }}
{{- $v := $root.Values }}
{{- $query := "" }}
{{- $user := $v.postgresql.auth.username }}
{{- $port := 5432 }}
{{- $database := $v.postgresql.auth.database }}
{{- $ca := include "conversation-events.postgresqlCaSecret" $root }}
{{- if eq $v.postgresql.mode "cloudnativepg" }}
{{- $query = "?sslmode=verify-full" }}
{{- else if eq $v.postgresql.mode "external" }}
{{- $query = printf "?sslmode=%s" $v.externalDatabase.sslMode }}
{{- $user = $v.externalDatabase.username }}
{{- $port = $v.externalDatabase.port }}
{{- $database = $v.externalDatabase.database }}
{{- end }}
{{- if $ca }}
{{- $query = printf "%s&sslrootcert=/etc/conversation-events/postgresql-ca/ca.crt" $query }}
{{- end }}
{{- $auth := include "conversation-events.urlEncode" $user }}
{{- if $password }}{{ $auth = printf "%s:%s" $auth (include "conversation-events.urlEncode" $password) }}{{ end }}
{{- printf "postgresql+psycopg2://%s@%s:%v/%s%s" $auth (include "conversation-events.postgresqlHost" $root) $port (include "conversation-events.urlEncode" $database) $query }}
{{- end }}

{{/* env entries of one credential: (list "CE_AMQP_USERNAME" value-or-nil from-or-nil). */}}
{{- define "conversation-events.credentialEnv" -}}
{{- $from := index . 2 }}
- name: {{ index . 0 }}
{{- if $from }}
  valueFrom:
    secretKeyRef:
      name: {{ $from.name }}
      key: {{ $from.key }}
{{- else }}
  value: {{ index . 1 | quote }}
{{- end }}
{{- end }}

{{/*
Base URL of RabbitMQ's management API, without credentials: where every process applies the
queue policy (CE_MANAGEMENT_URL), the scaler's CE_SCALER_MANAGEMENT_URL and KEDA's host. An
external cluster may name each node's, comma-separated; KEDA takes the first. The
bundled broker's Service is named with its namespace, as the KEDA operator resolves names from
its own namespace.
*/}}
{{- define "conversation-events.managementUrl" -}}
{{- if ne .Values.rabbitmq.mode "external" }}
{{- printf "http://%s.%s.svc:15672" (include "conversation-events.rabbitmqHost" .) .Release.Namespace }}
{{- else }}
{{- $urls := list }}
{{- range $url := splitList "," (required "externalRabbitmq.managementUrl is required: the queue policy (dead-lettering, delivery limit) is applied through it" .Values.externalRabbitmq.managementUrl) }}
{{- $urls = append $urls (trim $url | trimSuffix "/") }}
{{- end }}
{{- join "," $urls }}
{{- end }}
{{- end }}

{{/*
Hook events of the migration Job: a database or broker of the release (bundled, or an
operator's cluster) exists only after install.
*/}}
{{- define "conversation-events.migrationHooks" -}}
{{- if or (ne .Values.postgresql.mode "external") (ne .Values.rabbitmq.mode "external") }}post-install,pre-upgrade{{ else }}pre-install,pre-upgrade{{ end }}
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
{{- with .Values.tracing }}
{{- if .enabled }}
OTEL_TRACES_EXPORTER: "otlp"
OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf"
OTEL_EXPORTER_OTLP_ENDPOINT: {{ .endpoint | quote }}
OTEL_TRACES_SAMPLER: {{ .sampler | quote }}
OTEL_TRACES_SAMPLER_ARG: {{ .samplerArg | quote }}
{{- range $name, $value := .env }}
{{ $name }}: {{ $value | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
checksum/config and checksum/secret annotations of the app pods: a changed credential rolls them.
checksum/secret covers everything the chart's Secret is made of, generated credentials included
(read back from the cluster), or the data of secrets.existingSecret as the cluster holds it at
install or upgrade (offline: nothing, so rotating that Secret needs a restart, docs/deploy.md).
*/}}
{{- define "conversation-events.checksums" -}}
{{- $credentials := "" }}
{{- if .Values.secrets.existingSecret }}
{{- $credentials = dig "data" dict (lookup "v1" "Secret" .Release.Namespace .Values.secrets.existingSecret) | toJson }}
{{- else }}
{{- $credentials = include "conversation-events.generatedCredentials" . }}
{{- end }}
checksum/config: {{ include "conversation-events.configData" . | sha256sum }}
checksum/secret: {{ toJson (list $credentials .Values.secrets .Values.externalDatabase .Values.externalRabbitmq .Values.postgresql.auth .Values.postgresql.mode .Values.rabbitmq.auth .Values.rabbitmq.vhost .Values.rabbitmq.mode .Values.rabbitmq.users) | sha256sum }}
{{- end }}

{{/* Where a process finds the database (secretEnv's first part). Call with (list $ SECRET). */}}
{{- define "conversation-events.databaseEnv" -}}
{{- $root := index . 0 }}
{{- $secret := index . 1 }}
{{- $db := include "conversation-events.databaseCredentials" $root | fromYaml }}
{{- if $db }}
- name: CE_DATABASE_URL
  value: {{ include "conversation-events.databaseUrl" (list $root "") | quote }}
{{- if $db.usernameFrom }}
{{- include "conversation-events.credentialEnv" (list "CE_DATABASE_USERNAME" "" $db.usernameFrom) }}
{{- end }}
{{- include "conversation-events.credentialEnv" (list "CE_DATABASE_PASSWORD" "" $db.passwordFrom) }}
{{- else }}
- name: CE_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: database-url
{{- end }}
{{- end }}

{{/*
Where a process finds the database and the broker. Call with the root (the worker's broker
user), or with (list $ "api") or (list $ "migrations" SECRET) where SECRET holds the URLs that
carry their credentials (default: the release's Secret).
*/}}
{{- define "conversation-events.secretEnv" -}}
{{- $root := . }}
{{- $component := "worker" }}
{{- $secret := "" }}
{{- if kindIs "slice" . }}
{{- $root = index . 0 }}
{{- $component = index . 1 }}
{{- if gt (len .) 2 }}{{ $secret = index . 2 }}{{ end }}
{{- end }}
{{- $secret = $root.Values.secrets.existingSecret | default $secret | default (include "conversation-events.secretName" $root) }}
{{- include "conversation-events.databaseEnv" (list $root $secret) }}
{{- $mq := include "conversation-events.brokerCredentials" (list $root $component) | fromYaml }}
{{- if $mq }}
- name: CE_AMQP_URL
  value: {{ include "conversation-events.amqpUrlWithoutCredentials" $root | quote }}
{{- include "conversation-events.credentialEnv" (list "CE_AMQP_USERNAME" $mq.username $mq.usernameFrom) }}
{{- include "conversation-events.credentialEnv" (list "CE_AMQP_PASSWORD" "" $mq.passwordFrom) }}
{{- else }}
- name: CE_AMQP_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: amqp-url
{{- end }}
{{- if and (include "conversation-events.perComponentUsers" $root) (ne $component "migrations") }}
# The migration step applies the queue policy; this process's broker user may not.
- name: CE_QUEUE_POLICY_ON_START
  value: "false"
{{- end }}
{{- if include "conversation-events.rabbitmqCaSecret" $root }}
- name: SSL_CERT_FILE
  value: /etc/conversation-events/rabbitmq-ca/ca.crt
{{- end }}
{{- end }}

{{/* Volumes every app pod mounts: a writable /tmp and the optional CA bundles. */}}
{{- define "conversation-events.appVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- with include "conversation-events.postgresqlCaSecret" . }}
- name: postgresql-ca
  secret:
    secretName: {{ . }}
    items: [{key: ca.crt, path: ca.crt}]
{{- end }}
{{- with include "conversation-events.rabbitmqCaSecret" . }}
- name: rabbitmq-ca
  secret:
    secretName: {{ . }}
{{- end }}
{{- end }}

{{- define "conversation-events.appVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if include "conversation-events.postgresqlCaSecret" . }}
- name: postgresql-ca
  mountPath: /etc/conversation-events/postgresql-ca
  readOnly: true
{{- end }}
{{- if include "conversation-events.rabbitmqCaSecret" . }}
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

{{/* Scheduling fields of a pod. Call with a values block holding nodeSelector/tolerations/affinity
and priorityClassName (topology spread: conversation-events.topologySpread). */}}
{{- define "conversation-events.scheduling" -}}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
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

{{/* Secret and key holding the bundled PostgreSQL's / RabbitMQ's passwords. */}}
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
{{- if and (not .Values.secrets.existingSecret) (eq .Values.rabbitmq.mode "external") (not .Values.externalRabbitmq.username) (not .Values.externalRabbitmq.usernameKey) }}
{{- fail "externalRabbitmq.username is required with an external RabbitMQ (or externalRabbitmq.usernameKey, or secrets.existingSecret)" }}
{{- end }}
{{- if and .Values.tracing.enabled (not .Values.tracing.endpoint) }}
{{- fail "tracing.endpoint is required with tracing.enabled (the OTLP/HTTP receiver's base URL)" }}
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

{{/*
Annotations of a resource: `commonAnnotations` merged with the object's own (which win).
Renders the whole `annotations:` key, or nothing. Call with (list $) or (list $ $own).
*/}}
{{- define "conversation-events.annotations" -}}
{{- $root := index . 0 }}
{{- $own := dict }}
{{- if gt (len .) 1 }}{{ $own = index . 1 | default dict }}{{ end }}
{{- with merge (deepCopy $own) $root.Values.commonAnnotations }}{{ dict "annotations" . | toYaml }}{{ end }}
{{- end }}

{{/* The lines of `commonAnnotations`, for an `annotations:` block of the chart's own keys (the
schema keeps `helm.sh/` keys out of commonAnnotations, so they never collide). */}}
{{- define "conversation-events.commonAnnotations" -}}
{{- with .Values.commonAnnotations }}{{ toYaml . }}{{ end }}
{{- end }}

{{/* Labels of a pod template: the standard ones and the component's `podLabels`, which add
labels but never replace a standard one. Call with (list $ "api" .Values.api.podLabels). */}}
{{- define "conversation-events.podLabels" -}}
{{- $standard := include "conversation-events.labels" (list (index . 0) (index . 1)) | fromYaml }}
{{- toYaml (merge $standard (index . 2 | default dict)) }}
{{- end }}

{{/*
Topology spread of a component's pods: each constraint without a labelSelector spreads this
component's pods of the same rollout (matchLabelKeys pod-template-hash). Call with
(list $ "api" .Values.api.topologySpreadConstraints).
*/}}
{{- define "conversation-events.topologySpread" -}}
{{- $root := index . 0 }}
{{- $selector := include "conversation-events.selectorLabels" (list $root (index . 1)) | fromYaml }}
{{- $out := list }}
{{- range index . 2 }}
{{- $c := deepCopy . }}
{{- if not (hasKey $c "labelSelector") }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" $selector) }}
{{- if not (hasKey $c "matchLabelKeys") }}{{ $_ := set $c "matchLabelKeys" (list "pod-template-hash") }}{{ end }}
{{- end }}
{{- $out = append $out $c }}
{{- end }}
{{- with $out }}{{ dict "topologySpreadConstraints" . | toYaml }}{{ end }}
{{- end }}

{{/* envFrom of an app container: the shared ConfigMap, `config.extraEnvFrom`, then the
component's own. Call with (list $ .Values.api.extraEnvFrom). */}}
{{- define "conversation-events.envFrom" -}}
{{- $root := index . 0 -}}
- configMapRef:
    name: {{ include "conversation-events.configMapName" $root }}
{{- with $root.Values.config.extraEnvFrom }}
{{ toYaml . }}
{{- end }}
{{- with index . 1 }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The Ingress's annotations: the user's, and the body-size limit of the API
(`api.maxBodyBytes`) under each annotation named in `api.ingress.bodySizeAnnotations`. */}}
{{- define "conversation-events.ingressAnnotations" -}}
{{- $out := deepCopy (.Values.api.ingress.annotations | default dict) }}
{{- range .Values.api.ingress.bodySizeAnnotations }}
{{- $_ := set $out . (include "conversation-events.number" $.Values.api.maxBodyBytes) }}
{{- end }}
{{- toYaml $out }}
{{- end }}
