import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { request } from 'undici';
import YAML from 'yaml';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { createCa, type TestCa } from '../helpers/certificates.js';
import { findTool } from '../helpers/tools.js';

// The Grafana dashboard (monitoring/grafana-dashboard.json): its Prometheus queries select
// sidecars by the label the PodMonitors set, parse as PromQL, and name only metrics a sidecar
// exports, those of TLS and of a policy file included.

const run = promisify(execFile);
const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

interface Panel {
  title: string;
  type: string;
  datasource?: { type: string };
  targets?: { expr: string }[];
}
const dashboard = JSON.parse(read('monitoring/grafana-dashboard.json')) as {
  panels: Panel[];
  templating: { list: { name: string; query: string; allValue?: string }[] };
};
/** The panels' Prometheus queries (the Loki table of audit lines aside). */
const queries = dashboard.panels
  .filter((p) => p.type !== 'row' && p.datasource?.type === 'prometheus')
  .flatMap((p) => (p.targets ?? []).map((t) => ({ title: p.title, expr: t.expr })));
const METRIC = /\b(?:mcp_auth_(?!sidecar\b)[a-z_]+|process_[a-z_]+|nodejs_[a-z_]+|up)\b(\{[^}]*\})?/g;

const promtool = findTool('promtool');
const openssl = findTool('openssl');

describe('the Grafana dashboard', () => {
  it('selects sidecars by the label mcp_auth_sidecar ($server) and the namespace, never by job', () => {
    expect(queries.length).toBeGreaterThan(15);
    for (const { title, expr } of queries) {
      expect(expr, title).not.toMatch(/\bjob\b/);
      for (const [selector] of expr.matchAll(METRIC)) expect(selector, `${title}: ${selector}`).toContain('mcp_auth_sidecar=~"$server"');
    }
    const variables = Object.fromEntries(dashboard.templating.list.map((v) => [v.name, v]));
    expect(variables.server!.query).toContain('mcp_auth_sidecar');
    // "All" must not match series without the label: .+ rather than .*.
    expect(variables.server!.allValue).toBe('.+');
  });

  it('leads from the audit lines of tool calls to their traces (traceId, the traces data source)', () => {
    const panel = (dashboard.panels as (Panel & Record<string, any>)[]).find(
      (p) => p.datasource?.type === 'loki' && /trace/i.test(p.title),
    )!;
    expect(panel.targets![0]!.expr).toContain('"msg":"mcp"');
    const link = panel.fieldConfig.overrides.find((o: any) => o.matcher.options === 'traceId').properties.find((p: any) => p.id === 'links')
      .value[0].url as string;
    expect(link).toContain('${__value.raw}');
    expect(link).toContain('${traces}');
    expect(dashboard.templating.list.find((v) => v.name === 'traces')).toMatchObject({ query: 'tempo' });
    // No two panels overlap.
    const cells = new Set<string>();
    for (const p of dashboard.panels as (Panel & { gridPos: { x: number; y: number; w: number; h: number } })[]) {
      for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x++)
        for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y++) {
          expect(cells.has(`${x},${y}`), `${p.title} overlaps at ${x},${y}`).toBe(false);
          cells.add(`${x},${y}`);
        }
    }
  });

  it('has panels for certificate expiry, policy reload state, Redis errors, refused requests and evictions', () => {
    const uses = (metric: string) => queries.filter((q) => q.expr.includes(metric)).map((q) => q.title);
    for (const metric of [
      'mcp_auth_tls_certificate_expiry_timestamp_seconds',
      'mcp_auth_tls_reloads_total',
      'mcp_auth_policy_last_reload_successful',
      'mcp_auth_policy_reloads_total',
      'mcp_auth_rate_limit_backend_errors_total',
      'mcp_auth_http_refused_total',
      'mcp_auth_connections_evicted_total',
    ])
      expect(uses(metric), metric).not.toEqual([]);
  });

  it.skipIf(!promtool)('every query parses as PromQL (promtool check rules)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dashboard-'));
    try {
      // Grafana's variables as they expand; each query as a recording rule promtool parses.
      const expand = (expr: string) => expr.replaceAll('$__rate_interval', '5m').replaceAll('$server', '.+').replaceAll('$namespace', '.*');
      const rules = queries.map((q, i) => ({ record: `dashboard:query_${i}`, expr: expand(q.expr) }));
      writeFileSync(join(dir, 'rules.yml'), YAML.stringify({ groups: [{ name: 'dashboard', rules }] }));
      const { stdout } = await run(promtool!, ['check', 'rules', join(dir, 'rules.yml')]);
      expect(stdout).toContain(`SUCCESS: ${rules.length} rules found`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  describe.skipIf(!openssl)('against a sidecar with TLS, a policy file and introspection', () => {
    let issuer: TestIssuer;
    let upstream: TestUpstream;
    let sidecar: RunningSidecar;
    let ca: TestCa;
    let dir: string;

    beforeAll(async () => {
      issuer = await startIssuer();
      await issuer.addKey();
      upstream = await startUpstream();
      ca = createCa(openssl!);
      const leaf = ca.issue('0D01');
      dir = mkdtempSync(join(tmpdir(), 'dashboard-sidecar-'));
      writeFileSync(join(dir, 'tls.crt'), leaf.cert);
      writeFileSync(join(dir, 'tls.key'), leaf.key);
      writeFileSync(join(dir, 'policy.yaml'), 'rules:\n  - name: all\n    effect: allow\n    when: "true"\n');
      writeFileSync(join(dir, 'client-secret'), issuer.introspection.client.secret);
      sidecar = await startSidecar(
        testEnv(issuer, upstream, {
          TLS_CERT_FILE: join(dir, 'tls.crt'),
          TLS_KEY_FILE: join(dir, 'tls.key'),
          POLICY_FILE: join(dir, 'policy.yaml'),
          OIDC_INTROSPECTION: 'missing-claims',
          OIDC_INTROSPECTION_CLIENT_ID: issuer.introspection.client.id,
          OIDC_INTROSPECTION_CLIENT_SECRET_FILE: join(dir, 'client-secret'),
        }),
      );
    });
    afterAll(async () => {
      await sidecar?.close();
      await upstream?.close();
      await issuer?.close();
      ca?.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it('every metric the dashboard and the alert rules query is exported', async () => {
      const text = await (await request(`${sidecar.adminUrl}/metrics`)).body.text();
      const rules = YAML.parse(read('monitoring/alerts.rules.yml')) as { groups: { rules: { expr: string }[] }[] };
      const exprs = [...queries.map((q) => q.expr), ...rules.groups.flatMap((g) => g.rules.map((r) => r.expr))];
      const names = new Set(exprs.flatMap((expr) => [...expr.matchAll(METRIC)].map(([selector]) => selector.replace(/\{.*$/, ''))));
      names.delete('up'); // Prometheus's own, per target
      expect(names.size).toBeGreaterThan(15);
      for (const name of names) expect(text, name).toMatch(new RegExp(`^${name}(_bucket)?[{ ]`, 'm'));
    });
  });
});
