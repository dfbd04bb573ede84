{{- /* The sidecar's environment: config, with PORT and ADMIN_PORT from the chart's keys. */ -}}
{{- define "mcp-auth-sidecar.configData" -}}
{{- $v := include "mcp-auth-sidecar.checked" . | fromYaml -}}
{{- $data := dict "PORT" (toString (int $v.port)) "ADMIN_PORT" (toString (int $v.adminPort)) -}}
{{- range $name, $value := $v.config -}}
{{- /* YAML numbers arrive as floats: 1000000 would print as 1e+06. */ -}}
{{- if and (kindIs "float64" $value) (eq $value (float64 (int64 $value))) }}{{ $value = int64 $value }}{{ end -}}
{{- $_ := set $data $name (toString $value) -}}
{{- end -}}
{{- toYaml $data -}}
{{- end -}}

{{- /*
Every object beside the pod, each named <server>-<role> so that two MCP servers in one namespace
never share one: the sidecar's ConfigMap(s), its NetworkPolicy and PodMonitor, the Redis for
rate limits, and (once per Prometheus) the alert rules. Takes the same dict as the pod's
templates, with selector (the pods' selector labels) required.
*/ -}}
{{- define "mcp-auth-sidecar.manifests" -}}
{{- $v := include "mcp-auth-sidecar.checked" . | fromYaml -}}
{{- $selector := required "mcp-auth-sidecar: pass selector, the labels the Deployment selects its pods by" .selector -}}
{{- $namespace := .top.Release.Namespace -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .server }}-auth-sidecar-config
  namespace: {{ $namespace }}
data:
  {{- include "mcp-auth-sidecar.configData" . | nindent 2 }}
{{- if $v.issuers }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .server }}-auth-sidecar-issuers
  namespace: {{ $namespace }}
data:
  issuers.yaml: {{ $v.issuers | quote }}
{{- end }}
{{- if $v.policy }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .server }}-auth-sidecar-policy
  namespace: {{ $namespace }}
data:
  policy.yaml: {{ $v.policy | quote }}
{{- end }}
---
# Only the sidecar's proxy port, and its admin port from the monitoring namespace, accept
# connections: nothing reaches the MCP server's own port around the sidecar.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ .server }}-auth-sidecar
  namespace: {{ $namespace }}
spec:
  podSelector:
    matchLabels:
      {{- toYaml $selector | nindent 6 }}
  policyTypes: ["Ingress"]
  ingress:
    - ports:
        - port: {{ int $v.port }}
          protocol: TCP
    - from:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ $v.monitoring.namespace }}
      ports:
        - port: {{ int $v.adminPort }}
          protocol: TCP
{{- if $v.monitoring.podMonitor.enabled }}
---
# The target label mcp_auth_sidecar=<server> is what the alert rules and the dashboard select by.
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata:
  name: {{ .server }}-auth-sidecar
  namespace: {{ $namespace }}
  labels:
    release: {{ $v.monitoring.podMonitor.release }}
spec:
  selector:
    matchLabels:
      {{- toYaml $selector | nindent 6 }}
  podMetricsEndpoints:
    - port: admin
      path: /metrics
      interval: {{ $v.monitoring.podMonitor.interval }}
      relabelings:
        - action: replace
          targetLabel: mcp_auth_sidecar
          replacement: {{ .server }}
{{- end }}
{{- if $v.rateLimitRedis.enabled }}
{{- $redis := printf "%s-rate-limit-redis" .server }}
---
# One small Redis for the rate-limit counters: no persistence, no replicas needed.
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ $redis }}
  namespace: {{ $namespace }}
spec:
  serviceName: {{ $redis }}
  replicas: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: rate-limit-redis
      app.kubernetes.io/instance: {{ .server }}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: rate-limit-redis
        app.kubernetes.io/instance: {{ .server }}
    spec:
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 999
        runAsGroup: 999
        seccompProfile: { type: RuntimeDefault }
      containers:
        - name: redis
          image: {{ $v.rateLimitRedis.image }}
          args:
            - --requirepass
            - $(REDIS_PASSWORD)
            - --save
            - ""
            - --appendonly
            - "no"
            - --maxmemory
            - 48mb
            # Every key has an expiry: under memory pressure the nearest to expire goes first.
            - --maxmemory-policy
            - volatile-ttl
          env:
            - name: REDIS_PASSWORD
              valueFrom:
                secretKeyRef: { name: {{ $v.rateLimitRedis.existingSecret }}, key: password }
          ports:
            - name: redis
              containerPort: 6379
          readinessProbe:
            tcpSocket: { port: redis }
            periodSeconds: 5
          livenessProbe:
            tcpSocket: { port: redis }
            periodSeconds: 10
          resources:
            requests: { cpu: 20m, memory: 32Mi }
            limits: { memory: 64Mi }
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: { drop: ["ALL"] }
          volumeMounts:
            - name: data
              mountPath: /data
      volumes:
        - name: data
          emptyDir: {}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $redis }}
  namespace: {{ $namespace }}
spec:
  selector:
    app.kubernetes.io/name: rate-limit-redis
    app.kubernetes.io/instance: {{ .server }}
  ports:
    - name: redis
      port: 6379
      targetPort: redis
---
# Only the MCP server's pods reach Redis.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ $redis }}
  namespace: {{ $namespace }}
spec:
  podSelector:
    matchLabels:
      app.kubernetes.io/name: rate-limit-redis
      app.kubernetes.io/instance: {{ .server }}
  policyTypes: ["Ingress"]
  ingress:
    - from:
        - podSelector:
            matchLabels:
              {{- toYaml $selector | nindent 14 }}
      ports:
        - port: 6379
          protocol: TCP
{{- end }}
{{- if $v.monitoring.rules.enabled }}
---
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: mcp-auth-sidecar
  namespace: {{ $namespace }}
  labels:
    app.kubernetes.io/name: mcp-auth-sidecar
    role: alert-rules
    release: {{ $v.monitoring.rules.release }}
spec:
  {{- include "mcp-auth-sidecar.rules" . | nindent 2 }}
{{- end }}
{{- end -}}
