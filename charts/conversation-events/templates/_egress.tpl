{{/*
Egress rules (NetworkPolicyEgressRule list items) to the data services and DNS. The bundled
PostgreSQL and RabbitMQ are selected by their pods; an external server's address is not known
to the chart (a host name, maybe several nodes; an operator's pods), so it is its port, on
any address.
*/}}
{{- define "conversation-events.egressToPostgresql" -}}
{{- if eq .Values.postgresql.mode "bundled" }}
- to:
    - podSelector:
        matchLabels:
          {{- include "conversation-events.selectorLabels" (list . "postgresql") | nindent 10 }}
  ports:
    - port: 5432
      protocol: TCP
{{- else }}
- ports:
    - port: {{ ternary .Values.externalDatabase.port 5432 (eq .Values.postgresql.mode "external") | int64 }}
      protocol: TCP
{{- end }}
{{- end }}

{{/* To RabbitMQ: AMQP (unless called with (list $ false)) and the management API. */}}
{{- define "conversation-events.egressToRabbitmq" -}}
{{- $root := index . 0 }}
{{- $amqp := index . 1 }}
{{- if eq $root.Values.rabbitmq.mode "bundled" }}
- to:
    - podSelector:
        matchLabels:
          {{- include "conversation-events.selectorLabels" (list $root "rabbitmq") | nindent 10 }}
  ports:
    {{- if $amqp }}
    - port: 5672
      protocol: TCP
    {{- end }}
    - port: 15672
      protocol: TCP
{{- else }}
{{- $ports := list }}
{{- if $amqp }}
{{- $ports = append $ports (ternary $root.Values.externalRabbitmq.port 5672 (eq $root.Values.rabbitmq.mode "external") | int64) }}
{{- end }}
{{- range $base := splitList "," (include "conversation-events.managementUrl" $root) }}
{{- $url := urlParse (trim $base) }}
{{- $ports = append $ports (regexFind "[0-9]+$" $url.host | default (ternary "443" "80" (eq $url.scheme "https")) | int64) }}
{{- end }}
- ports:
    {{- range $port := $ports | uniq }}
    - port: {{ $port }}
      protocol: TCP
    {{- end }}
{{- end }}
{{- end }}

{{- define "conversation-events.egressToDns" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}
