{{- /*
The defaults. The chart that uses this library sets its own under mcpAuthSidecar in its values;
they override these key by key.
*/ -}}
{{- define "mcp-auth-sidecar.defaults" -}}
# The sidecar's image; a digest pins it (repository@sha256:...), else tag. One of them is required.
image:
  repository: ""
  tag: ""
  digest: ""
# true: a Kubernetes native sidecar (1.29+), an init container with restartPolicy Always.
native: false
# The sidecar's ports, set only here (PORT and ADMIN_PORT in its environment follow). Move them
# when the MCP server uses 8080 or 9090 itself.
port: 8080
adminPort: 9090
# The sidecar's environment: OIDC_ISSUER, OIDC_ALLOWED_AZP or OIDC_AUDIENCES, RESOURCE_URL
# (required), UPSTREAM_URL, ... (every variable: mcp-auth-sidecar --help). Not PORT, ADMIN_PORT
# POLICY_FILE or ISSUERS_FILE: those come from the keys of this chart. A change rolls the pods.
config: {}
# The tool policy's text (helm --set-file mcpAuthSidecar.policy=policy.yaml). Set: a ConfigMap
# <server>-auth-sidecar-policy mounted as a directory and POLICY_FILE pointing into it; a new
# text is reloaded by the running sidecars, without a rollout.
policy: ""
# Further trusted issuers, the YAML list of ISSUERS_FILE (helm --set-file
# mcpAuthSidecar.issuers=issuers.yaml). Set: a ConfigMap <server>-auth-sidecar-issuers mounted as
# a directory and ISSUERS_FILE pointing into it; read at start-up, so a change rolls the pods.
issuers: ""
rateLimitRedis:
  # A small Redis (StatefulSet <server>-rate-limit-redis) shared by every replica's sidecar.
  enabled: false
  # Required when enabled: the name of a Secret of yours with the key password (URL-safe).
  existingSecret: ""
  image: redis:7.4-alpine
resources:
  requests: { cpu: 50m, memory: 128Mi }
  limits: { memory: 256Mi }
monitoring:
  # The namespace whose pods may reach the admin port (Prometheus).
  namespace: monitoring
  podMonitor:
    enabled: true
    # kube-prometheus-stack selects PodMonitors by release=<its Helm release name>.
    release: kube-prometheus-stack
    interval: 30s
  rules:
    # The PrometheusRule mcp-auth-sidecar: once per Prometheus, so in one release only.
    enabled: false
    release: kube-prometheus-stack
{{- end -}}

{{- /* The defaults overridden by .Values.mcpAuthSidecar, as YAML (fromYaml it). Takes the chart's root context. */ -}}
{{- define "mcp-auth-sidecar.values" -}}
{{- $defaults := include "mcp-auth-sidecar.defaults" . | fromYaml -}}
{{- toYaml (mustMergeOverwrite $defaults (deepCopy (.Values.mcpAuthSidecar | default dict))) -}}
{{- end -}}

{{- /*
The values, checked: rendering fails, naming the key, rather than produce a pod that cannot
start or a sidecar without what was asked for. Takes the call's dict (top, server, ...).
*/ -}}
{{- define "mcp-auth-sidecar.checked" -}}
{{- $v := include "mcp-auth-sidecar.values" .top | fromYaml -}}
{{- $_ := required "mcp-auth-sidecar: pass server, the MCP server's name (its Deployment's): the objects are named <server>-auth-sidecar..." .server -}}
{{- if not $v.image.repository -}}
{{- fail "mcp-auth-sidecar: mcpAuthSidecar.image.repository is required" -}}
{{- end -}}
{{- if not (or $v.image.digest $v.image.tag) -}}
{{- fail "mcp-auth-sidecar: set mcpAuthSidecar.image.digest (sha256:..., preferred) or mcpAuthSidecar.image.tag" -}}
{{- end -}}
{{- range $name := list "PORT" "ADMIN_PORT" "POLICY_FILE" "ISSUERS_FILE" -}}
{{- if hasKey $v.config $name -}}
{{- fail (printf "mcp-auth-sidecar: mcpAuthSidecar.config.%s: set it with mcpAuthSidecar.%s instead (one place)" $name (get (dict "PORT" "port" "ADMIN_PORT" "adminPort" "POLICY_FILE" "policy" "ISSUERS_FILE" "issuers") $name)) -}}
{{- end -}}
{{- end -}}
{{- if not $v.config.RESOURCE_URL -}}
{{- fail "mcp-auth-sidecar: mcpAuthSidecar.config.RESOURCE_URL is required: the public URL of the MCP server (what Coder's MCP server entry points at)" -}}
{{- end -}}
{{- if eq (int $v.port) (int $v.adminPort) -}}
{{- fail "mcp-auth-sidecar: mcpAuthSidecar.port and mcpAuthSidecar.adminPort must differ" -}}
{{- end -}}
{{- if and $v.rateLimitRedis.enabled (not $v.rateLimitRedis.existingSecret) -}}
{{- fail "mcp-auth-sidecar: mcpAuthSidecar.rateLimitRedis.existingSecret is required with rateLimitRedis.enabled: the name of a Secret of yours with the key password (this chart never ships one)" -}}
{{- end -}}
{{- toYaml $v -}}
{{- end -}}
