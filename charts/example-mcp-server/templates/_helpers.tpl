{{- define "example-mcp-server.fullname" -}}
{{- .Values.fullnameOverride | default .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "example-mcp-server.selectorLabels" -}}
{{- if .Values.selectorLabels -}}
{{- toYaml .Values.selectorLabels -}}
{{- else -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- end -}}

{{- /* The one dict every mcp-auth-sidecar template takes: names come from this chart's full name. */ -}}
{{- define "example-mcp-server.authSidecar" -}}
{{- $name := include "example-mcp-server.fullname" . -}}
{{- toYaml (dict "server" $name "service" (.Values.service.name | default $name) "selector" (include "example-mcp-server.selectorLabels" . | fromYaml)) -}}
{{- end -}}
