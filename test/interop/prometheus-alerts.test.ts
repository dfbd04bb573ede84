import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { findTool } from '../helpers/tools.js';
import { helmRules, prometheusRule, rulesBody } from '../../scripts/sync-alert-rules.js';

const run = promisify(execFile);
const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

const promtool = findTool('promtool');

describe('alert rules', () => {
  it.skipIf(!promtool)('pass promtool check rules and the unit test of every alert', async () => {
    const check = await run(promtool!, ['check', 'rules', 'monitoring/alerts.rules.yml']);
    const rules = (YAML.parse(read('monitoring/alerts.rules.yml')) as { groups: { rules: unknown[] }[] }).groups.flatMap((g) => g.rules);
    expect(check.stdout).toContain(`SUCCESS: ${rules.length} rules found`);
    const unit = await run(promtool!, ['test', 'rules', 'monitoring/alerts.test.yml']);
    expect(unit.stdout).toContain('SUCCESS');
  });

  it('every alert has a unit test that expects it to fire', () => {
    const rules = YAML.parse(read('monitoring/alerts.rules.yml')) as { groups: { rules: { alert: string }[] }[] };
    const tests = YAML.parse(read('monitoring/alerts.test.yml')) as {
      tests: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[];
    };
    const firing = new Set(tests.tests.flatMap((t) => t.alert_rule_test.filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname)));
    for (const { alert } of rules.groups.flatMap((g) => g.rules)) expect(firing, alert).toContain(alert);
  });

  it('the PrometheusRule in k8s/monitoring and the Helm chart carry exactly the plain rules (npm run sync:alerts)', () => {
    const plain = read('monitoring/alerts.rules.yml');
    const resource = YAML.parse(read('k8s/monitoring/prometheusrule.yaml')) as { kind: string; spec: unknown };
    expect(resource.kind).toBe('PrometheusRule');
    expect(resource.spec).toEqual(YAML.parse(plain));
    expect(read('k8s/monitoring/prometheusrule.yaml')).toBe(prometheusRule(rulesBody(plain)));
    expect(read('charts/mcp-auth-sidecar/templates/_rules.tpl')).toBe(helmRules(rulesBody(plain)));
  });

  it('select sidecars by the label mcp_auth_sidecar that the PodMonitors set, never by a job or object name', () => {
    const rules = YAML.parse(read('monitoring/alerts.rules.yml')) as { groups: { rules: { alert: string; expr: string }[] }[] };
    for (const { alert, expr } of rules.groups.flatMap((g) => g.rules)) {
      expect(expr, alert).not.toMatch(/\bjob\s*(=|!=|=~|!~)/);
      // Every series selector names the label: a metric of ours, or up.
      for (const [selector] of expr.matchAll(/\b(?:mcp_auth_(?!sidecar\b)[a-z_]+|up)\b(\{[^}]*\})?/g))
        expect(selector, `${alert}: ${selector}`).toContain('mcp_auth_sidecar!=""');
    }
  });
});
