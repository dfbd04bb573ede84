{{- /* Generated from monitoring/alerts.rules.yml by scripts/sync-alert-rules.ts: edit that file. */ -}}
{{- define "mcp-auth-sidecar.rules" -}}
{{ `groups:
  - name: mcp-auth-sidecar
    rules:
      - alert: McpAuthSidecarDown
        expr: up{mcp_auth_sidecar!=""} == 0
        for: 2m
        labels:
          severity: critical
        annotations:
          summary: "the sidecar of {{ $labels.mcp_auth_sidecar }} at {{ $labels.instance }} is not scraped"
          description: "Prometheus cannot scrape the sidecar's admin port: the MCP server behind it is unreachable for every user."
      - alert: McpAuthSidecarAbsent
        # up == 0 needs a target: when the pods, the PodMonitor or its labels are gone, no up
        # series is left and only absent() notices.
        expr: absent(up{mcp_auth_sidecar!=""})
        for: 5m
        labels:
          severity: critical
        annotations:
          summary: "no mcp-auth-sidecar target is scraped"
          description: "Prometheus has no target with the label mcp_auth_sidecar at all: the pods or the PodMonitor are gone, or the PodMonitor is not selected (label release)."
      - alert: McpAuthRejectionRatioHigh
        # Only with at least 60 requests in 5 minutes: users without a Keycloak login always send
        # no token, so on a quiet server a handful of them would be most of the traffic.
        expr: |
          (
            sum by (namespace, mcp_auth_sidecar, reason) (rate(mcp_auth_rejected_total{mcp_auth_sidecar!=""}[5m]))
              / on (namespace, mcp_auth_sidecar) group_left ()
            (
              sum by (namespace, mcp_auth_sidecar) (rate(mcp_auth_rejected_total{mcp_auth_sidecar!=""}[5m]))
              + sum by (namespace, mcp_auth_sidecar) (rate(mcp_auth_accepted_total{mcp_auth_sidecar!=""}[5m]))
            )
          ) > 0.25
          and on (namespace, mcp_auth_sidecar)
          (
            sum by (namespace, mcp_auth_sidecar) (increase(mcp_auth_rejected_total{mcp_auth_sidecar!=""}[5m]))
            + sum by (namespace, mcp_auth_sidecar) (increase(mcp_auth_accepted_total{mcp_auth_sidecar!=""}[5m]))
          ) >= 60
        for: 10m
        labels:
          severity: warning
        annotations:
          summary: "{{ $value | humanizePercentage }} of the requests to {{ $labels.mcp_auth_sidecar }} rejected as {{ $labels.reason }}"
          description: "A quarter of the sidecar's requests (at least 60 in 5 minutes) are rejected for one reason. wrong_audience or wrong_issuer usually mean a Keycloak or Coder configuration change; expired means clients are not refreshing tokens."
      - alert: McpAuthKeySetUnavailable
        expr: sum by (namespace, mcp_auth_sidecar) (increase(mcp_auth_rejected_total{mcp_auth_sidecar!="", reason="jwks_unavailable"}[5m])) > 0
        labels:
          severity: critical
        annotations:
          summary: "the sidecar of {{ $labels.mcp_auth_sidecar }} answers 503: no usable Keycloak key set"
          description: "Requests are refused because no key set was ever loaded or the last good one is older than JWKS_MAX_STALE_SECONDS."
      - alert: McpAuthKeySetRefreshFailing
        # By issuer: each trusted issuer has a key set of its own.
        expr: |
          sum by (namespace, mcp_auth_sidecar, instance, issuer) (increase(mcp_auth_jwks_refresh_total{mcp_auth_sidecar!="", result="failure"}[15m])) > 0
          and
          sum by (namespace, mcp_auth_sidecar, instance, issuer) (increase(mcp_auth_jwks_refresh_total{mcp_auth_sidecar!="", result="success"}[15m])) == 0
        for: 5m
        labels:
          severity: warning
        annotations:
          summary: "the sidecar of {{ $labels.mcp_auth_sidecar }} at {{ $labels.instance }} cannot refresh the key set of {{ $labels.issuer }}"
          description: "Key set fetches fail and none succeeded in 15 minutes; the last good set keeps serving until JWKS_MAX_STALE_SECONDS."
      - alert: McpAuthKeySetStale
        expr: time() - mcp_auth_jwks_last_success_timestamp_seconds{mcp_auth_sidecar!=""} > 3600
        for: 5m
        labels:
          severity: warning
        annotations:
          summary: "the key set of {{ $labels.issuer }} in {{ $labels.mcp_auth_sidecar }} at {{ $labels.instance }} is {{ $value | humanizeDuration }} old"
          description: "No successful key set fetch for over an hour (refresh runs every JWKS_REFRESH_SECONDS); rotated Keycloak keys will not be accepted."
      - alert: McpAuthIntrospectionFailing
        expr: |
          sum by (namespace, mcp_auth_sidecar, instance, issuer) (increase(mcp_auth_introspection_requests_total{mcp_auth_sidecar!="", result="error"}[5m])) > 0
          and
          sum by (namespace, mcp_auth_sidecar, instance, issuer) (increase(mcp_auth_introspection_requests_total{mcp_auth_sidecar!="", result=~"active|inactive"}[5m])) == 0
        for: 5m
        labels:
          severity: critical
        annotations:
          summary: "the sidecar of {{ $labels.mcp_auth_sidecar }} at {{ $labels.instance }} cannot introspect tokens at {{ $labels.issuer }}"
          description: "Token introspection calls fail and none succeeded in 5 minutes: tokens already introspected keep working until they expire, new ones that need introspection get 503 introspection_unavailable. The warn log \"introspection failed\" says why (endpoint down, 401 for a wrong client secret, a timeout)."
      - alert: McpAuthUpstreamFailures
        expr: sum by (namespace, mcp_auth_sidecar, kind) (rate(mcp_auth_upstream_failures_total{mcp_auth_sidecar!=""}[5m])) > 0.1
        for: 5m
        labels:
          severity: warning
        annotations:
          summary: "the sidecar cannot reach the MCP server {{ $labels.mcp_auth_sidecar }} ({{ $labels.kind }})"
          description: "Accepted requests fail upstream with kind {{ $labels.kind }} (connect: server down; timeout: no response headers within UPSTREAM_TIMEOUT_SECONDS; reset: connection dropped)."
      - alert: McpAuthToolErrorRatioHigh
        expr: |
          (
            sum by (namespace, mcp_auth_sidecar, tool) (rate(mcp_auth_tool_calls_total{mcp_auth_sidecar!="", outcome=~"tool_error|rpc_error|upstream_error"}[10m]))
              / sum by (namespace, mcp_auth_sidecar, tool) (rate(mcp_auth_tool_calls_total{mcp_auth_sidecar!=""}[10m]))
          ) > 0.2
          and on (namespace, mcp_auth_sidecar, tool)
          sum by (namespace, mcp_auth_sidecar, tool) (increase(mcp_auth_tool_calls_total{mcp_auth_sidecar!=""}[10m])) >= 10
        for: 10m
        labels:
          severity: warning
        annotations:
          summary: "{{ $value | humanizePercentage }} of calls to tool {{ $labels.tool }} of {{ $labels.mcp_auth_sidecar }} fail"
          description: "Over a fifth of the tool's calls (at least 10 in 10 minutes) end as tool_error, rpc_error or upstream_error. The audit lines (\"msg\":\"mcp\", outcome, rpcErrorCode) tell which users and arguments."
      - alert: McpAuthRateLimitBackendErrors
        expr: sum by (namespace, mcp_auth_sidecar, instance) (increase(mcp_auth_rate_limit_backend_errors_total{mcp_auth_sidecar!=""}[5m])) > 0
        for: 2m
        labels:
          severity: warning
        annotations:
          summary: "the sidecar of {{ $labels.mcp_auth_sidecar }} at {{ $labels.instance }} cannot use Redis for rate limits"
          description: "Rate limit checks fail against Redis (down, slower than REDIS_TIMEOUT_MS, or refusing, e.g. a wrong password). Meanwhile RATE_LIMIT_ON_REDIS_ERROR decides: allow counts in each replica alone, deny refuses requests."
      - alert: McpAuthPolicyFileRefused
        expr: max by (namespace, mcp_auth_sidecar, instance, file) (mcp_auth_policy_last_reload_successful{mcp_auth_sidecar!=""}) == 0
        for: 5m
        labels:
          severity: warning
        annotations:
          summary: "the sidecar of {{ $labels.mcp_auth_sidecar }} at {{ $labels.instance }} does not run the policy file {{ $labels.file }} as it is now"
          description: "The file's latest version was refused (invalid rules or limits, unreadable, or a change that needs a restart), so an older version of the tool policy and limits is in force. The warn log \"policy file invalid\" or \"not applied\" says why."
      - alert: McpAuthTlsCertificateExpiring
        expr: min by (namespace, mcp_auth_sidecar, instance) (mcp_auth_tls_certificate_expiry_timestamp_seconds{mcp_auth_sidecar!=""}) - time() < 7 * 86400
        for: 1h
        labels:
          severity: warning
        annotations:
          summary: "the TLS certificate served by the sidecar of {{ $labels.mcp_auth_sidecar }} at {{ $labels.instance }} expires in {{ $value | humanizeDuration }}"
          description: "The certificate on the proxy port (TLS_CERT_FILE) expires within a week: the renewed files did not arrive, or were refused (mcp_auth_tls_reloads_total{result=\"failure\"}, warn log \"tls certificate reload failed\")."
      - alert: McpAuthTokenExchangeFailing
        # Only calls to the token endpoint count (cached tokens are not calls): at least 5 failed,
        # and more failed than succeeded, in 10 minutes.
        expr: |
          sum by (namespace, mcp_auth_sidecar, instance) (increase(mcp_auth_token_exchanges_total{mcp_auth_sidecar!="", result="failure"}[10m])) >= 5
          and
          sum by (namespace, mcp_auth_sidecar, instance) (increase(mcp_auth_token_exchanges_total{mcp_auth_sidecar!="", result="failure"}[10m]))
            > sum by (namespace, mcp_auth_sidecar, instance) (increase(mcp_auth_token_exchanges_total{mcp_auth_sidecar!="", result="success"}[10m]))
        for: 5m
        labels:
          severity: warning
        annotations:
          summary: "the sidecar of {{ $labels.mcp_auth_sidecar }} at {{ $labels.instance }} cannot exchange tokens for the upstream"
          description: "Token exchanges at the issuer's token endpoint fail (UPSTREAM_TOKEN=exchange): requests whose token was not exchanged before are answered 502 token_exchange_failed. The warn log \"token exchange failed\" gives the issuer's error (a wrong client secret, an audience the client may not ask for, a DPoP-bound token, the issuer down)."
` }}
{{- end -}}
