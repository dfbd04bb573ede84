import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';
import YAML from 'yaml';
import { checkSidecars, kustomize, kustomizeTool, parseManifests, type Manifest } from '../helpers/manifests.js';
import { findTool } from '../helpers/tools.js';

// The Helm library chart (charts/mcp-auth-sidecar) through the example chart that uses it
// (charts/example-mcp-server): helm lint, and helm template of the three servers of
// test/k8s/workloads (values in test/helm/), held to the checks of the kustomize render and
// compared with it object by object.

const REPO = resolve(import.meta.dirname, '../..');
const WORKLOADS = [
  { name: 'weather-mcp', dir: 'weather', namespace: 'tools' },
  { name: 'notes-mcp', dir: 'notes', namespace: 'tools' },
  { name: 'billing-mcp', dir: 'billing', namespace: 'billing' },
];

const helm = findTool('helm');

describe.skipIf(!helm)('the Helm library chart', () => {
  let home: string;
  let chart: string;
  /** helm with its caches and configuration in a folder of the test's own. */
  const run = (...args: string[]) => {
    const env = {
      ...process.env,
      HELM_CACHE_HOME: join(home, 'cache'),
      HELM_CONFIG_HOME: join(home, 'config'),
      HELM_DATA_HOME: join(home, 'data'),
    };
    return spawnSync(helm!, args, { encoding: 'utf8', env, cwd: REPO });
  };
  const template = (release: string, namespace: string, ...args: string[]): Manifest[] => {
    const result = run('template', release, chart, '--namespace', namespace, ...args);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    return parseManifests(result.stdout);
  };
  /** The values of a server of test/k8s/workloads: its file, its policy, and its issuers list where it has one. */
  const valuesOf = (w: (typeof WORKLOADS)[number]) => [
    '-f',
    `test/helm/${w.dir}.yaml`,
    '--set-file',
    `mcpAuthSidecar.policy=test/k8s/workloads/${w.dir}/policy.yaml`,
    ...(existsSync(join(REPO, `test/k8s/workloads/${w.dir}/issuers.yaml`))
      ? ['--set-file', `mcpAuthSidecar.issuers=test/k8s/workloads/${w.dir}/issuers.yaml`]
      : []),
  ];
  const workload = (w: (typeof WORKLOADS)[number], ...args: string[]) => template(w.name, w.namespace, ...valuesOf(w), ...args);

  beforeAll(() => {
    // The charts copied, and the library put into the example's charts/ as a user's `helm dependency build` does.
    home = mkdtempSync(join(tmpdir(), 'helm-'));
    cpSync(join(REPO, 'charts'), join(home, 'charts'), { recursive: true });
    chart = join(home, 'charts/example-mcp-server');
    const build = run('dependency', 'build', chart);
    expect(build.status, build.stderr).toBe(0);
  });
  afterAll(() => rmSync(home, { recursive: true, force: true }));

  it('passes helm lint: the library, the example, and the example with each server', () => {
    for (const args of [[join(home, 'charts/mcp-auth-sidecar')], [chart], ...WORKLOADS.map((w) => [chart, ...valuesOf(w)])]) {
      const lint = run('lint', '--strict', ...args);
      expect(lint.status, lint.stdout + lint.stderr).toBe(0);
      expect(lint.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
    }
  });

  it('the example renders a valid MCP server with the sidecar, as k8s/example does', () => {
    const objects = template('datastore-mcp', 'coder-demo-mcp');
    const [server] = checkSidecars(objects, { secretsRendered: false });
    expect(server).toMatchObject({ name: 'datastore-mcp', native: false });
    expect(objects.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'Deployment', 'NetworkPolicy', 'PodMonitor', 'Service']);
  });

  it('renders the three servers so that they pass the checks of the kustomize render', () => {
    const objects = WORKLOADS.flatMap((w) => workload(w));
    const servers = checkSidecars(objects, { secretsRendered: false });
    expect(servers.map((s) => s.name).sort()).toEqual(['billing-mcp', 'notes-mcp', 'weather-mcp']);
    for (const s of servers) expect(s.policy && s.redis, s.name).toBeTruthy();
    expect(servers.find((s) => s.name === 'notes-mcp')!.native).toBe(true);
    expect(servers.filter((s) => s.issuers).map((s) => s.name)).toEqual(['billing-mcp']);
  });

  it.skipIf(!kustomizeTool)('renders the same objects as kustomize: containers, NetworkPolicies, PodMonitors, Redis', () => {
    // Kustomize's generated names carry a hash of the content; Helm's do not (its checksum
    // annotation rolls the pods instead), and the Redis Secret is the user's with Helm.
    const normalize = (objects: Manifest[]) =>
      objects
        .filter((o) => o.kind !== 'Secret')
        .map((o) => {
          const copy = JSON.parse(
            JSON.stringify(o).replace(
              /(-auth-sidecar-config|-auth-sidecar-policy|-auth-sidecar-issuers|-rate-limit-redis)-[a-z0-9]{10}"/g,
              '$1"',
            ),
          ) as Manifest;
          delete copy.spec?.template?.metadata?.annotations?.['checksum/auth-sidecar-config'];
          // Kustomize's patch puts the sidecar first, the example chart after the server: order aside.
          copy.spec?.template?.spec?.containers?.sort((a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name));
          return copy;
        })
        .sort((a, b) => `${a.kind}/${a.metadata.name}`.localeCompare(`${b.kind}/${b.metadata.name}`));
    for (const w of WORKLOADS) {
      const byKustomize = normalize(kustomize(`test/k8s/workloads/${w.dir}`));
      const byHelm = normalize(workload(w));
      expect(byHelm.map((o) => `${o.kind}/${o.metadata.name}`)).toEqual(byKustomize.map((o) => `${o.kind}/${o.metadata.name}`));
      for (const [i, object] of byHelm.entries())
        expect(object, `${w.name}: ${object.kind}/${object.metadata.name}`).toEqual(byKustomize[i]);
    }
  });

  it('renders the alert rules once asked, equal to monitoring/alerts.rules.yml and to k8s/monitoring', () => {
    const objects = template('datastore-mcp', 'monitoring', '--set', 'mcpAuthSidecar.monitoring.rules.enabled=true');
    const rule = objects.find((o) => o.kind === 'PrometheusRule')!;
    expect(rule.spec).toEqual(YAML.parse(readFileSync(join(REPO, 'monitoring/alerts.rules.yml'), 'utf8')));
    const shipped = YAML.parse(readFileSync(join(REPO, 'k8s/monitoring/prometheusrule.yaml'), 'utf8')) as Manifest;
    expect({ ...rule, metadata: { ...rule.metadata, namespace: undefined } }).toEqual({
      ...shipped,
      metadata: { ...shipped.metadata, namespace: undefined },
    });
    expect(template('datastore-mcp', 'monitoring').some((o) => o.kind === 'PrometheusRule')).toBe(false);
  });

  it('writes numbers in config as the sidecar reads them (YAML numbers reach templates as floats)', () => {
    const values = join(home, 'numbers.yaml');
    writeFileSync(values, 'mcpAuthSidecar:\n  config:\n    RATE_LIMIT_USER_PER_MINUTE: 1000000\n    FORWARD_AUTHORIZATION: true\n');
    const config = template('datastore-mcp', 'coder-demo-mcp', '-f', values).find((o) => o.kind === 'ConfigMap')!;
    expect(config.data).toMatchObject({ RATE_LIMIT_USER_PER_MINUTE: '1000000', FORWARD_AUTHORIZATION: 'true' });
  });

  it('fails rendering, naming the value, rather than render a sidecar that cannot work', () => {
    const fails = (...args: string[]) => {
      const result = run('template', 'x', chart, ...args);
      expect(result.status).not.toBe(0);
      return result.stderr;
    };
    expect(fails('--set', 'mcpAuthSidecar.rateLimitRedis.enabled=true')).toContain(
      'mcpAuthSidecar.rateLimitRedis.existingSecret is required',
    );
    expect(fails('--set', 'mcpAuthSidecar.image.repository=')).toContain('mcpAuthSidecar.image.repository is required');
    expect(fails('--set', 'mcpAuthSidecar.image.tag=')).toContain('set mcpAuthSidecar.image.digest');
    expect(fails('--set', 'mcpAuthSidecar.config.PORT=8081')).toContain('mcpAuthSidecar.config.PORT: set it with mcpAuthSidecar.port');
    expect(fails('--set', 'mcpAuthSidecar.config.ISSUERS_FILE=/x')).toContain(
      'mcpAuthSidecar.config.ISSUERS_FILE: set it with mcpAuthSidecar.issuers',
    );
    expect(fails('--set', 'mcpAuthSidecar.config.RESOURCE_URL=')).toContain('mcpAuthSidecar.config.RESOURCE_URL is required');
    expect(fails('--set', 'mcpAuthSidecar.adminPort=8080')).toContain('must differ');
  });
});
