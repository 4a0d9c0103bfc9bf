{{/*
The credentials the chart generates when it owns the Secrets (no secrets.existingSecret): the
API key when secrets.apiKeys is empty, the bundled PostgreSQL's password and the bundled
RabbitMQ's (its administrator's and each component's user's, `<user>-password`).
Each is read back from its live Secret (`lookup`), so an upgrade keeps it; only a missing one
is generated. Worked out once per render and kept on the root context, so the Secrets and the
pods' checksum annotations see the same values. Returns JSON.

Offline (`helm template`, `helm install --dry-run`, GitOps tools that render with the former)
`lookup` finds nothing, and generating would give different credentials on every render:
rendering then stops with a message, unless secrets.generateOffline says the output is only
to be looked at. Offline is told apart from a first install by listing the release namespace's
Secrets, which Helm's own release storage needs permission for: a cluster answers with a list
(empty for a new namespace), no cluster with nothing at all.
*/}}
{{- define "conversation-events.generatedCredentials" -}}
{{- if not (hasKey $ "conversationEventsCredentials") }}
{{- $ns := .Release.Namespace }}
{{- $found := dict }}
{{- $wanted := dict }}
{{- if not .Values.secrets.apiKeys }}
{{- $_ := set $wanted "api-keys" (include "conversation-events.fullname" .) }}
{{- end }}
{{- if eq .Values.postgresql.mode "bundled" }}
{{- $_ := set $wanted "postgresql-password" (include "conversation-events.componentName" (list . "postgresql")) }}
{{- end }}
{{- if eq .Values.rabbitmq.mode "bundled" }}
{{- range $user := include "conversation-events.brokerPasswordNames" . | fromJsonArray }}
{{- $_ := set $wanted (printf "%s-password" $user) (include "conversation-events.componentName" (list $ "rabbitmq")) }}
{{- end }}
{{- end }}
{{- $missing := list }}
{{- range $key, $secret := $wanted }}
{{- $value := dig "data" $key "" (lookup "v1" "Secret" $ns $secret) | b64dec }}
{{- if $value }}{{ $_ := set $found $key $value }}{{ else }}{{ $missing = append $missing $key }}{{ end }}
{{- end }}
{{- if and $missing (not .Values.secrets.generateOffline) (not (hasKey (lookup "v1" "Secret" $ns "") "items")) }}
{{- fail (printf "no cluster to read the generated credentials (%s) from: this render (helm template, --dry-run, a GitOps tool) would generate new ones each time. Create a Secret with the keys listed in the chart README and set secrets.existingSecret, or set secrets.generateOffline=true to render throwaway credentials that are never to be applied" (join ", " $missing)) }}
{{- end }}
{{- range $key := $missing }}
{{- /* The API key carries the prefix of every key (conversation_events.access.KEY_PREFIX), for secret scanners. */}}
{{- $_ := set $found $key (ternary (printf "ce_%s" (randAlphaNum 40)) (randAlphaNum 32) (eq $key "api-keys")) }}
{{- end }}
{{- $_ := set $ "conversationEventsCredentials" $found }}
{{- end }}
{{- get $ "conversationEventsCredentials" | toJson }}
{{- end }}

{{/* The bundled RabbitMQ's users with a generated password, as a JSON list. */}}
{{- define "conversation-events.brokerPasswordNames" -}}
{{- list "rabbitmq" "api" "worker" "scaler" "migrations" | toJson }}
{{- end }}
