import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { Deployment } from 'kubernetes-models/apps/v1';
import { ConfigMap, Service } from 'kubernetes-models/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { VARIABLES, loadConfig } from '../../src/config/config.js';
import { findTool } from '../helpers/tools.js';

type Manifest = { apiVersion: string; kind: string; metadata: { name: string }; [key: string]: unknown };

const defaults = loadConfig({ OIDC_ISSUER: 'https://x', OIDC_ALLOWED_AZP: 'coder' });

// kustomize itself where installed (.ci/run builds it with Go: Debian's kubectl is too old for
// components), else kubectl's built-in copy (kubectl kustomize).
const kustomize = (() => {
  try {
    return execFileSync('sh', ['-c', 'command -v kustomize'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
})();
const kubectl = kustomize ?? findTool('kubectl');
const renderCommand = (dir: string): [string, string[]] => (kustomize ? [kustomize, ['build', dir]] : [kubectl!, ['kustomize', dir]]);

const models: Record<string, new (o: never) => { validate(): void }> = {
  Deployment,
  ConfigMap,
  Service,
  NetworkPolicy,
  PodDisruptionBudget,
};

/** Validates each object against its Kubernetes schema; the Prometheus Operator's CRDs by shape. */
function expectValid(objects: Manifest[]): void {
  for (const object of objects) {
    const Model = models[object.kind];
    if (Model) {
      expect(() => new Model(object as never).validate(), `${object.kind}/${object.metadata.name}`).not.toThrow();
    } else {
      expect(object.apiVersion).toBe('monitoring.coreos.com/v1');
      expect(['PodMonitor', 'PrometheusRule']).toContain(object.kind);
    }
  }
}

function render(dir: string): Manifest[] {
  const [command, args] = renderCommand(dir);
  const out = execFileSync(command, args, { encoding: 'utf8' });
  return YAML.parseAllDocuments(out).map((d) => d.toJSON() as Manifest);
}

const kustomizations = readdirSync('k8s', { recursive: true, encoding: 'utf8' })
  .filter((p) => p.endsWith('kustomization.yaml'))
  .map((p) => join('k8s', p, '..'))
  .filter((dir) => !dir.includes('components'));

describe.skipIf(!kubectl)('Kubernetes manifests', () => {
  it.each(kustomizations)('%s renders with kubectl kustomize', (dir) => {
    expect(statSync(dir).isDirectory()).toBe(true);
    expect(render(dir).length).toBeGreaterThan(0);
  });

  // Without kubectl the tests below are skipped; an empty pod lets their set-up lines run.
  const objects = kubectl
    ? render('k8s/example')
    : [{ kind: 'Deployment', spec: { template: { spec: { containers: [] } } } } as unknown as Manifest];
  const byKind = (kind: string) => objects.filter((o) => o.kind === kind);

  it('every rendered object validates against the Kubernetes schema', () => {
    expectValid(objects);
    for (const object of objects) expect((object.metadata as { namespace?: string }).namespace).toBe('coder-demo-mcp');
    expect(objects.map((o) => o.kind).sort()).toEqual([
      'ConfigMap',
      'Deployment',
      'NetworkPolicy',
      'PodDisruptionBudget',
      'PodMonitor',
      'PrometheusRule',
      'Service',
    ]);
  });

  it("generates the configuration with a content hash the pod refers to, and takes the image from the user's kustomization", () => {
    const configMap = byKind('ConfigMap')[0]!;
    expect(configMap.metadata.name).toMatch(/^auth-sidecar-config-[a-z0-9]{10}$/);
    expect(sidecar.envFrom).toEqual([{ configMapRef: { name: configMap.metadata.name } }]);
    expect(sidecar.image).toBe('registry.example.com/usgov/mcp-auth-sidecar:0.1.0');
  });

  it('carries the label kube-prometheus-stack selects PodMonitors and PrometheusRules by, and a PodDisruptionBudget for the pods', () => {
    for (const kind of ['PodMonitor', 'PrometheusRule']) {
      expect((byKind(kind)[0]!.metadata as { labels?: Record<string, string> }).labels?.release, kind).toBe('kube-prometheus-stack');
    }
    const budget = byKind('PodDisruptionBudget')[0] as unknown as {
      spec: { minAvailable: number; selector: { matchLabels: Record<string, string> } };
    };
    const replicas = (
      byKind('Deployment')[0] as unknown as { spec: { replicas: number; selector: { matchLabels: Record<string, string> } } }
    ).spec;
    expect(budget.spec.selector.matchLabels).toEqual(replicas.selector.matchLabels);
    expect(budget.spec.minAvailable).toBeLessThan(replicas.replicas);
  });

  const deployment = byKind('Deployment')[0] as unknown as {
    spec: { template: { spec: { terminationGracePeriodSeconds: number; containers: Record<string, any>[] } } };
  };
  const pod = deployment.spec.template.spec;
  const sidecar = pod.containers.find((c) => c.name === 'auth-sidecar')!;

  it('configures only variables the sidecar knows, with the Keycloak issuer and azp=coder', () => {
    const known = new Set(VARIABLES.map((v) => v.name));
    const configMap = byKind('ConfigMap')[0] as unknown as { data: Record<string, string> };
    for (const name of Object.keys(configMap.data)) expect(known, name).toContain(name);
    expect(configMap.data.OIDC_ISSUER).toBe('https://auth.usgov.coderdemo.io/realms/coder');
    expect(configMap.data.OIDC_ALLOWED_AZP).toBe('coder');
    // The ConfigMap is a valid configuration on its own.
    expect(() => loadConfig(configMap.data)).not.toThrow();
    for (const env of (sidecar.env ?? []) as { name: string }[]) expect(known, env.name).toContain(env.name);
  });

  it('probes and ports agree with the code', () => {
    const ports = Object.fromEntries((sidecar.ports as { name: string; containerPort: number }[]).map((p) => [p.name, p.containerPort]));
    expect(ports).toEqual({ proxy: defaults.port, admin: defaults.adminPort });
    expect(sidecar.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'admin' });
    expect(sidecar.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'admin' });
    const service = byKind('Service')[0] as unknown as { spec: { ports: { port: number; targetPort: string }[] } };
    expect(service.spec.ports).toEqual([{ name: 'mcp', port: 8080, targetPort: 'proxy', protocol: 'TCP' }]);
    const monitor = byKind('PodMonitor')[0] as unknown as { spec: { podMetricsEndpoints: { port: string; path: string }[] } };
    expect(monitor.spec.podMetricsEndpoints[0]).toMatchObject({ port: 'admin', path: '/metrics' });
  });

  it('runs locked down: non-root, read-only root, no capabilities, RuntimeDefault seccomp, grace beyond the drain', () => {
    expect(sidecar.securityContext).toEqual({
      runAsNonRoot: true,
      runAsUser: 10001,
      runAsGroup: 10001,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    const preStopSeconds = Number(sidecar.lifecycle.preStop.exec.command[1]);
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(preStopSeconds + defaults.shutdownGraceSeconds);
  });

  it('lets nothing but the sidecar port (and admin from monitoring) in', () => {
    const policy = byKind('NetworkPolicy')[0] as unknown as { spec: { ingress: { ports: { port: number }[]; from?: unknown[] }[] } };
    const ports = policy.spec.ingress.flatMap((rule) => rule.ports.map((p) => p.port));
    expect(ports.sort()).toEqual([8080, 9090]);
    const admin = policy.spec.ingress.find((rule) => rule.ports.some((p) => p.port === 9090))!;
    expect(JSON.stringify(admin.from)).toContain('monitoring');
  });
});

describe.skipIf(!kubectl)('the component in front of another MCP server', () => {
  // Without kubectl the tests below are skipped; empty lists let their set-up lines run.
  const objects = kubectl ? render('test/k8s/weather-mcp') : [];
  const one = (kind: string) => objects.find((o) => o.kind === kind) as unknown as Record<string, any>;

  it('renders valid objects for weather-mcp with its own names and labels, and nothing of datastore-mcp', () => {
    expectValid(objects);
    expect(objects.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'Deployment', 'NetworkPolicy', 'PodMonitor', 'Service']);
    expect(JSON.stringify(objects)).not.toContain('datastore');
    for (const object of objects) expect((object.metadata as { namespace?: string }).namespace).toBe('tools');
    const labels = { 'app.kubernetes.io/name': 'weather-mcp' };
    expect(one('NetworkPolicy').spec.podSelector.matchLabels).toEqual(labels);
    expect(one('PodMonitor').spec.selector.matchLabels).toEqual(labels);
    expect(one('Service').spec.ports).toEqual([{ name: 'mcp', port: 8080, targetPort: 'proxy', protocol: 'TCP' }]);
    expect(one('Deployment').spec.template.metadata.annotations).toEqual({
      'mcp-auth-sidecar/service': 'weather',
      'mcp-auth-sidecar/resource-url': 'https://weather-mcp.tools.svc.cluster.local:8080',
    });
  });

  it('the native form runs the same sidecar as an init container with restartPolicy Always', () => {
    const pod = one('Deployment').spec.template.spec;
    expect(pod.containers.map((c: { name: string }) => c.name)).toEqual(['server']);
    const [native] = pod.initContainers as Record<string, unknown>[];
    expect(native).toMatchObject({
      name: 'auth-sidecar',
      restartPolicy: 'Always',
      image: 'ghcr.example.org/platform/mcp-auth-sidecar:9.9.9',
    });
    const example = (
      render('k8s/example').find((o) => o.kind === 'Deployment') as unknown as Record<string, any>
    ).spec.template.spec.containers.find((c: { name: string }) => c.name === 'auth-sidecar');
    const { restartPolicy: _, ...rest } = native!;
    expect({ ...rest, image: example.image, envFrom: example.envFrom }).toEqual(example);
    expect(pod.terminationGracePeriodSeconds).toBe(30);
  });

  it('fails loudly when the kustomization has no Deployment to attach to', () => {
    const failure = (() => {
      try {
        const [command, args] = renderCommand('test/k8s/no-deployment');
        execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
        return undefined;
      } catch (error) {
        return error as { status: number; stderr: string };
      }
    })();
    expect(failure?.status).not.toBe(0);
    expect(failure?.stderr).toContain('nothing selected by Deployment');
  });
});
