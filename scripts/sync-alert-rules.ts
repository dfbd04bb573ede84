// Writes monitoring/alerts.rules.yml, the one source of the alert rules, into the two places
// that ship them: the PrometheusRule of k8s/monitoring and the Helm library chart's template.
// Run after changing the rules: npm run sync:alerts (test/interop/prometheus-alerts.test.ts
// fails while either differs).
import { readFileSync, writeFileSync } from 'node:fs';

const root = new URL('../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');

/** The rules file without its leading comment block: `groups:` and what follows. */
export function rulesBody(text: string): string {
  const lines = text.split('\n');
  const start = lines.findIndex((line) => !line.startsWith('#') && line.trim() !== '');
  return lines.slice(start).join('\n').trimEnd() + '\n';
}

const indent = (text: string, spaces: number) =>
  text
    .split('\n')
    .map((line) => (line === '' ? line : ' '.repeat(spaces) + line))
    .join('\n');

export function prometheusRule(body: string): string {
  return `# Generated from monitoring/alerts.rules.yml by scripts/sync-alert-rules.ts (a test checks they are equal).
# Once per Prometheus, not per MCP server: the rules select every sidecar by its target label
# mcp_auth_sidecar, wherever it runs.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: mcp-auth-sidecar
  labels:
    app.kubernetes.io/name: mcp-auth-sidecar
    role: alert-rules
    # kube-prometheus-stack selects rules by release=<Helm release name> (ruleSelector).
    release: kube-prometheus-stack
spec:
${indent(body, 2)}`;
}

export function helmRules(body: string): string {
  // A Go template raw string: the rules' own {{ $labels... }} stay as they are.
  if (body.includes('`')) throw new Error('monitoring/alerts.rules.yml: a backquote cannot go into the Helm template');
  return `{{- /* Generated from monitoring/alerts.rules.yml by scripts/sync-alert-rules.ts: edit that file. */ -}}
{{- define "mcp-auth-sidecar.rules" -}}
{{ \`${body}\` }}
{{- end -}}
`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const body = rulesBody(read('monitoring/alerts.rules.yml'));
  writeFileSync(new URL('k8s/monitoring/prometheusrule.yaml', root), prometheusRule(body));
  writeFileSync(new URL('charts/mcp-auth-sidecar/templates/_rules.tpl', root), helmRules(body));
}
