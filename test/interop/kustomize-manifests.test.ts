import { afterAll, describe, expect, it } from 'vitest';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import YAML from 'yaml';
import { checkSidecars, kustomize, kustomizeFailure, kustomizeTool, type Manifest } from '../helpers/manifests.js';

// The kustomize components (k8s/components) rendered as users use them: the examples under k8s/,
// three MCP servers at once with every add-on (test/k8s/workloads), and the mistakes that must
// fail rendering rather than deploy a pod without its sidecar, policy or limits.

const REPO = resolve(import.meta.dirname, '../..');
const WORKLOADS = 'test/k8s/workloads';
const kinds = (objects: Manifest[]) => objects.map((o) => o.kind).sort();

const scratch: string[] = [];
afterAll(() => {
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

/** A copy of test/k8s/workloads/<name> in a temporary folder, changed by `edit`, still pointing at this repo's components. */
function variant(name: string, edit: (dir: string) => void): string {
  const dir = mkdtempSync(join(tmpdir(), `kustomize-${name}-`));
  scratch.push(dir);
  cpSync(join(REPO, WORKLOADS, name), dir, { recursive: true });
  const file = join(dir, 'kustomization.yaml');
  // Components must be relative paths: from the copy to this repo's k8s/.
  writeFileSync(file, readFileSync(file, 'utf8').replaceAll('../../../../k8s', relative(dir, join(REPO, 'k8s'))));
  edit(dir);
  return dir;
}
const rewrite = (dir: string, file: string, change: (text: string) => string) =>
  writeFileSync(join(dir, file), change(readFileSync(join(dir, file), 'utf8')));
const components = (dir: string, list: string[]) =>
  rewrite(dir, 'kustomization.yaml', (text) => {
    const k = YAML.parse(text) as { components: string[] };
    const base = relative(dir, join(REPO, 'k8s/components'));
    return YAML.stringify({ ...k, components: list.map((c) => `${base}/${c}`) });
  });

describe.skipIf(!kustomizeTool)('the kustomizations under k8s/', () => {
  const dirs = readdirSync('k8s', { recursive: true, encoding: 'utf8' })
    .filter((p) => p.endsWith('kustomization.yaml') && !p.includes('components'))
    .map((p) => join('k8s', p, '..'))
    .sort();

  it('are the examples and the rules, and each renders', () => {
    expect(dirs).toEqual(['k8s/example', 'k8s/example-rate-limits', 'k8s/monitoring']);
    expect(kustomize('k8s/example').length).toBeGreaterThan(0);
    expect(kustomize('k8s/monitoring').map((o) => o.kind)).toEqual(['PrometheusRule']);
  });

  it('k8s/example: a complete, valid MCP server with the sidecar, the rules and a disruption budget', () => {
    const objects = kustomize('k8s/example');
    const [server] = checkSidecars(objects, { secretsRendered: true });
    expect(kinds(objects)).toEqual([
      'ConfigMap',
      'Deployment',
      'NetworkPolicy',
      'PodDisruptionBudget',
      'PodMonitor',
      'PrometheusRule',
      'Service',
    ]);
    for (const object of objects) expect(object.metadata.namespace).toBe('coder-demo-mcp');
    expect(server).toMatchObject({ name: 'datastore-mcp', native: false });
    // The configuration's name carries a hash of its content: a change rolls the pods.
    expect(server!.sidecar.envFrom[0].configMapRef.name).toMatch(/^datastore-mcp-auth-sidecar-config-[a-z0-9]{10}$/);
    expect(server!.sidecar.image).toBe('registry.example.com/usgov/mcp-auth-sidecar:0.1.0');
    expect(server!.service.spec.ports).toEqual([{ name: 'mcp', port: 8080, targetPort: 8080, protocol: 'TCP' }]);
    expect(server!.config).toMatchObject({ OIDC_ISSUER: 'https://auth.usgov.coderdemo.io/realms/coder', OIDC_ALLOWED_AZP: 'coder' });
    for (const kind of ['PodMonitor', 'PrometheusRule'])
      expect(objects.find((o) => o.kind === kind)!.metadata.labels?.release, kind).toBe('kube-prometheus-stack');
    const budget = objects.find((o) => o.kind === 'PodDisruptionBudget')!;
    const deployment = objects.find((o) => o.kind === 'Deployment')!;
    expect(budget.spec.selector.matchLabels).toEqual(deployment.spec.selector.matchLabels);
    expect(budget.spec.minAvailable).toBeLessThan(deployment.spec.replicas);
  });

  it('k8s/example-rate-limits: will not render without a Redis password of yours, and with one adds Redis for this server', () => {
    const env = 'k8s/example-rate-limits/redis.env';
    // A password of the developer's own is left as it is; else one is made for the test and removed.
    const ours = !existsSync(env);
    if (ours) {
      const failure = kustomizeFailure('k8s/example-rate-limits');
      expect(failure.status).not.toBe(0);
      expect(failure.stderr).toContain('redis.env');
      writeFileSync(env, `password=${randomBytes(24).toString('hex')}\n`);
    }
    try {
      const objects = kustomize('k8s/example-rate-limits');
      const [server] = checkSidecars(objects, { secretsRendered: true });
      expect(server!.redis?.statefulSet.metadata.name).toBe('datastore-mcp-rate-limit-redis');
      expect(server!.config).toMatchObject({ RATE_LIMIT_USER_PER_MINUTE: '600', RATE_LIMIT_TOOL_PER_MINUTE: '120' });
    } finally {
      if (ours) rmSync(env);
    }
  });
});

describe.skipIf(!kustomizeTool)('three MCP servers rendered at once, with every add-on', () => {
  // Without kustomize the tests are skipped; an empty list lets the set-up lines run.
  const objects = kustomizeTool ? kustomize(WORKLOADS) : [];
  const servers = kustomizeTool ? checkSidecars(objects, { secretsRendered: true }) : [];
  const server = (name: string) => servers.find((s) => s.name === name)!;

  it('each attaches to its own workload, nothing collides, every object validates', () => {
    expect(servers.map((s) => [s.namespace, s.name]).sort()).toEqual([
      ['billing', 'billing-mcp'],
      ['tools', 'notes-mcp'],
      ['tools', 'weather-mcp'],
    ]);
    for (const s of servers) expect(s.policy && s.redis, `${s.name}: every add-on`).toBeTruthy();
    // Every object the components add or take over is named after its server.
    for (const object of objects.filter((o) => !['Deployment', 'Service'].includes(o.kind) || o.metadata.name.includes('redis'))) {
      const owner = servers.find((s) => object.metadata.name.startsWith(`${s.name}-`));
      expect(owner?.namespace, `${object.kind}/${object.metadata.name}`).toBe(object.metadata.namespace);
    }
    // Two of them share a namespace: each has its own Redis, with its own password.
    expect(server('weather-mcp').redis!.secret).not.toBe(server('notes-mcp').redis!.secret);
    expect(kinds(objects).filter((k) => k === 'StatefulSet')).toHaveLength(3);
  });

  it('each renders alone as it does beside the others', () => {
    for (const name of ['weather', 'notes', 'billing']) {
      const alone = kustomize(join(WORKLOADS, name));
      for (const object of alone) expect(objects).toContainEqual(object);
    }
    expect(objects).toHaveLength(['weather', 'notes', 'billing'].reduce((n, name) => n + kustomize(join(WORKLOADS, name)).length, 0));
  });

  it('a server that uses 8080 and 9090 itself gets the sidecar on the ports its configuration names, and keeps its own ports', () => {
    const billing = server('billing-mcp');
    expect(billing.config).toMatchObject({ PORT: '8081', ADMIN_PORT: '9091', UPSTREAM_URL: 'http://127.0.0.1:8080' });
    expect(billing.service.spec.ports).toEqual([
      { name: 'mcp', port: 80, targetPort: 8081, protocol: 'TCP' },
      { name: 'metrics', port: 9090, targetPort: 'metrics' },
    ]);
    expect(server('notes-mcp').service.spec.ports).toContainEqual({ name: 'metrics', port: 9100, targetPort: 'metrics' });
  });

  it("takes every name from the server's own: billing's prefix, set once in its base, reaches every object", () => {
    const billing = objects.filter((o) => o.metadata.namespace === 'billing');
    for (const object of billing) expect(object.metadata.name, object.kind).toMatch(/^billing-mcp(-|$)/);
    expect(server('billing-mcp').sidecar.envFrom[0].configMapRef.name).toMatch(/^billing-mcp-auth-sidecar-config-[a-z0-9]{10}$/);
  });

  it('the native form runs the very container the plain form would, as an init container with restartPolicy Always', () => {
    const notes = server('notes-mcp');
    expect(notes.native).toBe(true);
    expect(notes.pod.containers.map((c: { name: string }) => c.name)).toEqual(['notes']);
    expect(notes.sidecar.image).toMatch(/^ghcr\.example\.org\/platform\/mcp-auth-sidecar@sha256:[0-9a-f]{64}$/);
    const plain = variant('notes', (dir) => components(dir, ['auth-sidecar', 'tool-policy', 'rate-limit-redis']));
    const container = kustomize(plain)
      .find((o) => o.kind === 'Deployment')!
      .spec.template.spec.containers.find((c: { name: string }) => c.name === 'auth-sidecar');
    expect({ ...container, restartPolicy: 'Always' }).toEqual(notes.sidecar);
    for (const s of servers.filter((s) => !s.native)) expect(s.pod.initContainers).toBeUndefined();
  });

  it('mounts the policy ConfigMap as a directory; the one generated without a hash suffix is updated in place (hot reload)', () => {
    expect(server('weather-mcp').policy!.configMap.metadata.name).toMatch(/^weather-mcp-auth-sidecar-policy-[a-z0-9]{10}$/);
    expect(server('billing-mcp').policy!.configMap.metadata.name).toBe('billing-mcp-auth-sidecar-policy');
    for (const s of servers) {
      expect(s.sidecar.env).toContainEqual({ name: 'POLICY_FILE', value: '/etc/mcp-auth-sidecar/policy/policy.yaml' });
      expect(s.sidecar.volumeMounts).toContainEqual({
        name: 'auth-sidecar-policy',
        mountPath: '/etc/mcp-auth-sidecar/policy',
        readOnly: true,
      });
      expect(s.policy!.text).toBe(readFileSync(join(WORKLOADS, s.name.replace('-mcp', ''), 'policy.yaml'), 'utf8'));
    }
  });

  it('mounts a list of further issuers as a directory where only its server asks for one, read as the sidecar reads it', () => {
    const billing = server('billing-mcp');
    expect(billing.issuers!.configMap.metadata.name).toMatch(/^billing-mcp-auth-sidecar-issuers-[a-z0-9]{10}$/);
    expect(billing.sidecar.env).toContainEqual({ name: 'ISSUERS_FILE', value: '/etc/mcp-auth-sidecar/issuers/issuers.yaml' });
    expect(billing.sidecar.volumeMounts).toContainEqual({
      name: 'auth-sidecar-issuers',
      mountPath: '/etc/mcp-auth-sidecar/issuers',
      readOnly: true,
    });
    expect(billing.issuers!.text).toBe(readFileSync(join(WORKLOADS, 'billing', 'issuers.yaml'), 'utf8'));
    for (const s of servers.filter((s) => s !== billing)) {
      expect(s.issuers, s.name).toBeUndefined();
      expect(
        s.pod.volumes.map((v: { name: string }) => v.name),
        s.name,
      ).not.toContain('auth-sidecar-issuers');
    }
  });

  it("gives each server's Redis its own pods, labelled with the server, reachable only from that server's pods", () => {
    for (const s of servers) {
      expect(s.redis!.statefulSet.spec.selector.matchLabels).toEqual({
        'app.kubernetes.io/name': 'rate-limit-redis',
        'app.kubernetes.io/instance': s.name,
      });
      expect(s.sidecar.env).toContainEqual({ name: 'REDIS_URL', value: `redis://:$(REDIS_PASSWORD)@${s.name}-rate-limit-redis` });
      expect(s.redis!.secret).toMatch(new RegExp(`^${s.name}-rate-limit-redis-[a-z0-9]{10}$`));
    }
  });
});

describe.skipIf(!kustomizeTool)('rendering fails loudly, naming what is missing', () => {
  const fails = (dir: string) => {
    const { status, stderr } = kustomizeFailure(dir);
    expect(status).not.toBe(0);
    return stderr;
  };

  it('without a Deployment to attach to', () => {
    expect(fails('test/k8s/no-deployment')).toContain('nothing selected by Deployment');
  });

  it('without the Redis Secret of the user (no placeholder password ships)', () => {
    const dir = variant('weather', (d) => rewrite(d, 'kustomization.yaml', (t) => t.replace(/secretGenerator:\n( {2}.*\n)+/, '')));
    expect(fails(dir)).toContain('nothing selected by Secret.[noVer].[noGrp]/rate-limit-redis');
  });

  it('without PORT or ADMIN_PORT in the configuration (the one place the ports are set)', () => {
    expect(fails(variant('weather', (d) => rewrite(d, 'auth-sidecar.env', (t) => t.replace(/^PORT=.*\n/m, ''))))).toContain(
      'fieldPath `data.PORT` is missing',
    );
    expect(fails(variant('weather', (d) => rewrite(d, 'auth-sidecar.env', (t) => t.replace(/^ADMIN_PORT=.*\n/m, ''))))).toContain(
      'fieldPath `data.ADMIN_PORT` is missing',
    );
  });

  it('without a Service port named mcp to lead to the sidecar', () => {
    const dir = variant('weather', (d) => rewrite(d, 'weather.yaml', (t) => t.replace('- name: mcp', '- name: http')));
    expect(fails(dir)).toContain('fieldPath `spec.ports.[name=mcp].port` is missing');
  });

  it('without the policy ConfigMap, or with the file under another key', () => {
    const none = variant('weather', (d) => rewrite(d, 'kustomization.yaml', (t) => t.replace(/ {2}- name: auth-sidecar-policy\n.*\n/, '')));
    expect(fails(none)).toContain('nothing selected by ConfigMap.[noVer].[noGrp]/auth-sidecar-policy');
    const key = variant('weather', (d) =>
      rewrite(d, 'kustomization.yaml', (t) => t.replace('files: [policy.yaml]', 'files: [rules.yaml=policy.yaml]')),
    );
    expect(fails(key)).toContain('fieldPath `data.[policy.yaml]` is missing');
  });

  it('without the issuers ConfigMap, or with the list under another key', () => {
    const none = variant('billing', (d) =>
      rewrite(d, 'kustomization.yaml', (t) => t.replace(/ {2}- name: auth-sidecar-issuers\n.*\n/, '')),
    );
    expect(fails(none)).toContain('nothing selected by ConfigMap.[noVer].[noGrp]/auth-sidecar-issuers');
    const key = variant('billing', (d) =>
      rewrite(d, 'kustomization.yaml', (t) => t.replace('files: [issuers.yaml]', 'files: [realms.yaml=issuers.yaml]')),
    );
    expect(fails(key)).toContain('fieldPath `data.[issuers.yaml]` is missing');
  });

  it('with an add-on before the sidecar, or after the native form: no image-less container is added', () => {
    const message = 'fieldPath `spec.template.spec.containers.[name=auth-sidecar].image` is missing';
    expect(fails(variant('weather', (d) => components(d, ['tool-policy', 'auth-sidecar'])))).toContain(message);
    expect(fails(variant('billing', (d) => components(d, ['issuers', 'auth-sidecar'])))).toContain(message);
    expect(fails(variant('weather', (d) => components(d, ['auth-sidecar', 'auth-sidecar-native', 'rate-limit-redis'])))).toContain(message);
    expect(fails(variant('weather', (d) => components(d, ['auth-sidecar', 'auth-sidecar-native', 'tool-policy'])))).toContain(message);
  });

  it('with the native form and no sidecar to turn native', () => {
    expect(fails(variant('weather', (d) => components(d, ['auth-sidecar-native'])))).toContain(
      'fieldPath `spec.template.spec.containers.[name=auth-sidecar]` is missing',
    );
  });
});
