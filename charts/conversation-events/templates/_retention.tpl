{{/* The retention settings, the same for the workers (content retention 0) and the purge. */}}
{{- define "conversation-events.retentionEnv" -}}
- name: CE_RETENTION_CONTENT_DAYS
  value: {{ .Values.retention.contentDays | int64 | quote }}
- name: CE_RETENTION_EVENT_DAYS
  value: {{ .Values.retention.eventDays | int64 | quote }}
{{- end }}
