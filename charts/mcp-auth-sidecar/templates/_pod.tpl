{{- /*
What goes into the MCP server's pod. Every template takes one dict:
  (dict "top" $ "server" <the Deployment's name> "service" <the Service's name, default server>
        "selector" <the pods' selector labels, a map>)
See charts/example-mcp-server/templates/deployment.yaml.
*/ -}}

{{- /* The sidecar container, as a list item for containers: (plain form) or initContainers: (native). */ -}}
{{- define "mcp-auth-sidecar.container" -}}
{{- $v := include "mcp-auth-sidecar.checked" . | fromYaml -}}
- name: auth-sidecar
  image: {{ $v.image.repository }}{{ if $v.image.digest }}@{{ $v.image.digest }}{{ else }}:{{ $v.image.tag }}{{ end }}
  {{- if $v.native }}
  restartPolicy: Always
  {{- end }}
  envFrom:
    - configMapRef:
        name: {{ .server }}-auth-sidecar-config
  {{- if or $v.rateLimitRedis.enabled $v.policy $v.issuers }}
  env:
    {{- if $v.issuers }}
    - name: ISSUERS_FILE
      value: /etc/mcp-auth-sidecar/issuers/issuers.yaml
    {{- end }}
    {{- if $v.rateLimitRedis.enabled }}
    - name: REDIS_PASSWORD
      valueFrom:
        secretKeyRef: { name: {{ $v.rateLimitRedis.existingSecret }}, key: password }
    - name: REDIS_URL
      value: redis://:$(REDIS_PASSWORD)@{{ .server }}-rate-limit-redis
    {{- end }}
    {{- if $v.policy }}
    - name: POLICY_FILE
      value: /etc/mcp-auth-sidecar/policy/policy.yaml
    {{- end }}
  {{- end }}
  ports:
    - name: proxy
      containerPort: {{ int $v.port }}
    - name: admin
      containerPort: {{ int $v.adminPort }}
  startupProbe:
    httpGet: { path: /healthz, port: admin }
    periodSeconds: 2
    failureThreshold: 15
  livenessProbe:
    httpGet: { path: /healthz, port: admin }
    periodSeconds: 10
  readinessProbe:
    httpGet: { path: /readyz, port: admin }
    periodSeconds: 5
    failureThreshold: 2
  lifecycle:
    # Let the endpoint removal reach every node before the drain starts.
    preStop:
      exec:
        command: ["sleep", "5"]
  resources:
    {{- toYaml $v.resources | nindent 4 }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 10001
    runAsGroup: 10001
    readOnlyRootFilesystem: true
    allowPrivilegeEscalation: false
    capabilities:
      drop: ["ALL"]
    seccompProfile:
      type: RuntimeDefault
  {{- if or $v.policy $v.issuers }}
  # Directories, never subPath: a subPath mount never sees a ConfigMap update.
  volumeMounts:
    {{- if $v.issuers }}
    - name: auth-sidecar-issuers
      mountPath: /etc/mcp-auth-sidecar/issuers
      readOnly: true
    {{- end }}
    {{- if $v.policy }}
    - name: auth-sidecar-policy
      mountPath: /etc/mcp-auth-sidecar/policy
      readOnly: true
    {{- end }}
  {{- end }}
{{- end -}}

{{- /* For containers: the sidecar in the plain form, nothing in the native one. */ -}}
{{- define "mcp-auth-sidecar.containers" -}}
{{- $v := include "mcp-auth-sidecar.values" .top | fromYaml -}}
{{- if not $v.native }}{{ include "mcp-auth-sidecar.container" . }}{{ end -}}
{{- end -}}

{{- /* For initContainers: the sidecar in the native form, nothing in the plain one. */ -}}
{{- define "mcp-auth-sidecar.initContainers" -}}
{{- $v := include "mcp-auth-sidecar.values" .top | fromYaml -}}
{{- if $v.native }}{{ include "mcp-auth-sidecar.container" . }}{{ end -}}
{{- end -}}

{{- /* For volumes: the issuers and policy ConfigMaps, mounted as directories (nothing without them). */ -}}
{{- define "mcp-auth-sidecar.volumes" -}}
{{- $v := include "mcp-auth-sidecar.values" .top | fromYaml -}}
{{- $volumes := list -}}
{{- if $v.issuers -}}
{{- $volumes = append $volumes (dict "name" "auth-sidecar-issuers" "configMap" (dict "name" (printf "%s-auth-sidecar-issuers" .server))) -}}
{{- end -}}
{{- if $v.policy -}}
{{- $volumes = append $volumes (dict "name" "auth-sidecar-policy" "configMap" (dict "name" (printf "%s-auth-sidecar-policy" .server))) -}}
{{- end -}}
{{- if $volumes }}{{ toYaml $volumes }}{{ end -}}
{{- end -}}

{{- /*
For the pod template's annotations: the Service and RESOURCE_URL the sidecar answers for, and a
checksum of its environment and issuers list (both read at start-up), so that a change rolls the
pods (the policy reloads in place).
*/ -}}
{{- define "mcp-auth-sidecar.podAnnotations" -}}
{{- $v := include "mcp-auth-sidecar.checked" . | fromYaml -}}
mcp-auth-sidecar/service: {{ .service | default .server }}
mcp-auth-sidecar/resource-url: {{ $v.config.RESOURCE_URL | quote }}
checksum/auth-sidecar-config: {{ print (include "mcp-auth-sidecar.configData" .) $v.issuers | sha256sum }}
{{- end -}}

{{- /* preStop (5 s) + SHUTDOWN_GRACE_SECONDS (20 s) + margin: the pod's terminationGracePeriodSeconds. */ -}}
{{- define "mcp-auth-sidecar.terminationGracePeriodSeconds" -}}
30
{{- end -}}

{{- /* The sidecar's proxy port: the targetPort of the Service's port that clients use. */ -}}
{{- define "mcp-auth-sidecar.port" -}}
{{- $v := include "mcp-auth-sidecar.values" .top | fromYaml -}}
{{- int $v.port -}}
{{- end -}}
