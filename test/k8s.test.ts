import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { Deployment } from 'kubernetes-models/apps/v1';
import { ConfigMap, Service } from 'kubernetes-models/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { VARIABLES, loadConfig } from '../src/config.js';
import { findTool } from './helpers/tools.js';

type Manifest = { apiVersion: string; kind: string; metadata: { name: string }; [key: string]: unknown };

const defaults = loadConfig({ OIDC_ISSUER: 'https://x', OIDC_ALLOWED_AZP: 'coder' });

const kubectl = findTool('kubectl');

function render(dir: string): Manifest[] {
  const out = execFileSync(kubectl!, ['kustomize', dir], { encoding: 'utf8' });
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
  const objects = kubectl ? render('k8s/example') : [{ kind: 'Deployment', spec: { template: { spec: { containers: [] } } } } as unknown as Manifest];
  const byKind = (kind: string) => objects.filter((o) => o.kind === kind);

  it('every rendered object validates against the Kubernetes schema', () => {
    const models: Record<string, new (o: never) => { validate(): void }> = { Deployment, ConfigMap, Service, NetworkPolicy };
    for (const object of objects) {
      const Model = models[object.kind];
      if (Model) {
        expect(() => new Model(object as never).validate(), `${object.kind}/${object.metadata.name}`).not.toThrow();
      } else {
        // CRDs of the Prometheus Operator: check the shape we rely on.
        expect(object.apiVersion).toBe('monitoring.coreos.com/v1');
        expect(['PodMonitor', 'PrometheusRule']).toContain(object.kind);
      }
      expect((object.metadata as { namespace?: string }).namespace).toBe('coder-demo-mcp');
    }
    expect(objects.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'Deployment', 'NetworkPolicy', 'PodMonitor', 'PrometheusRule', 'Service']);
  });

  const deployment = byKind('Deployment')[0] as unknown as { spec: { template: { spec: { terminationGracePeriodSeconds: number; containers: Record<string, any>[] } } } };
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
      runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' },
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
