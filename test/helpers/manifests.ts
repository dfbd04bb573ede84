// Kubernetes manifests as the kustomize components and the Helm library chart render them, and
// the checks every render must pass, whichever tool made it: each sidecar attached to its own
// workload, its ports, policy, further issuers and Redis wired to that workload's objects, nothing shared with
// another MCP server, every object valid against its schema.

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { expect } from 'vitest';
import YAML from 'yaml';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { ConfigMap, Secret, Service } from 'kubernetes-models/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { PodMonitor, PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { VARIABLES, loadConfig } from '../../src/config/config.js';
import { parsePolicy } from '../../src/mcp/policy/file.js';
import { findTool } from './tools.js';

export type Manifest = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: any;
};

export function parseManifests(text: string): Manifest[] {
  return YAML.parseAllDocuments(text)
    .map((d) => d.toJSON() as Manifest | null)
    .filter((o): o is Manifest => o !== null);
}

// kustomize itself where installed (.ci/run builds it with Go when kubectl is absent), else
// kubectl's built-in copy (kubectl kustomize).
const kustomizeBinary = (() => {
  const path = spawnSync('sh', ['-c', 'command -v kustomize'], { encoding: 'utf8' }).stdout.trim();
  return path || undefined;
})();
export const kustomizeTool: string | undefined = kustomizeBinary ?? findTool('kubectl');
const kustomizeArgs = (dir: string) => (kustomizeBinary ? ['build', dir] : ['kustomize', dir]);

export function kustomize(dir: string): Manifest[] {
  return parseManifests(execFileSync(kustomizeTool!, kustomizeArgs(dir), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }));
}

/** Renders a kustomization expected to fail: its exit status and error output. */
export function kustomizeFailure(dir: string): { status: number | null; stderr: string } {
  const run = spawnSync(kustomizeTool!, kustomizeArgs(dir), { encoding: 'utf8' });
  return { status: run.status, stderr: run.stderr };
}

const MODELS: Record<string, new (o: never) => { validate(): void }> = {
  Deployment,
  StatefulSet,
  ConfigMap,
  Secret,
  Service,
  NetworkPolicy,
  PodDisruptionBudget,
  PodMonitor,
  PrometheusRule,
};

/** Every object validates against its schema (the Prometheus Operator's CRDs included), none is of another kind. */
export function expectValid(objects: Manifest[]): void {
  for (const object of objects) {
    const Model = MODELS[object.kind];
    expect(Model, `${object.kind} has no schema here`).toBeDefined();
    expect(() => new Model!(object as never).validate(), `${object.kind}/${object.metadata.name}`).not.toThrow();
  }
}

/** No two objects share kind, namespace and name. */
export function expectNoCollisions(objects: Manifest[]): void {
  const ids = objects.map((o) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`);
  expect(ids.filter((id, i) => ids.indexOf(id) !== i)).toEqual([]);
}

const known = new Set(VARIABLES.map((v) => v.name));
const selects = (selector: Record<string, string>, labels: Record<string, string> = {}) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

/** What the checks found for one MCP server, for the test's own expectations. */
export interface AttachedSidecar {
  name: string;
  namespace: string | undefined;
  native: boolean;
  sidecar: Record<string, any>;
  pod: Record<string, any>;
  config: Record<string, string>;
  service: Manifest;
  policy: { configMap: Manifest; text: string } | undefined;
  issuers: { configMap: Manifest; text: string } | undefined;
  redis: { statefulSet: Manifest; service: Manifest; networkPolicy: Manifest; secret: string } | undefined;
}

export interface CheckOptions {
  /** The Redis Secret is in the render (kustomize generates it; with Helm it is the user's own). */
  secretsRendered: boolean;
}

/**
 * The checks of every rendered MCP server (a Deployment with a container or native init container
 * auth-sidecar): run on the kustomize render and on the Helm render alike.
 */
export function checkSidecars(objects: Manifest[], options: CheckOptions): AttachedSidecar[] {
  expectValid(objects);
  expectNoCollisions(objects);
  const inNamespace = (ns: string | undefined) => objects.filter((o) => o.metadata.namespace === ns);
  const find = (kind: string, ns: string | undefined, name: string) =>
    inNamespace(ns).find((o) => o.kind === kind && o.metadata.name === name);
  const found: AttachedSidecar[] = [];

  for (const deployment of objects.filter((o) => o.kind === 'Deployment')) {
    const { name, namespace } = deployment.metadata;
    const pod = deployment.spec.template.spec;
    const podLabels = deployment.spec.template.metadata.labels as Record<string, string>;
    const selector = deployment.spec.selector.matchLabels as Record<string, string>;
    const all: Record<string, any>[] = [...(pod.initContainers ?? []), ...pod.containers];
    // A patch aimed at a container that is not there adds one without an image: never.
    for (const container of all) expect(container.image, `${name}: container ${container.name} has an image`).toBeTruthy();
    const sidecars = all.filter((c) => c.name === 'auth-sidecar');
    if (sidecars.length === 0) continue;
    expect(sidecars, `${name}: one sidecar`).toHaveLength(1);
    const sidecar = sidecars[0]!;
    const native = (pod.initContainers ?? []).includes(sidecar);
    if (native) expect(sidecar.restartPolicy, `${name}: a native sidecar restarts Always`).toBe('Always');
    else expect(sidecar.restartPolicy).toBeUndefined();

    // Configuration: the ConfigMap it reads, the variables it is given, all known; the ports from there.
    const configName = sidecar.envFrom[0].configMapRef.name as string;
    const configMap = find('ConfigMap', namespace, configName);
    expect(configMap, `${name}: ConfigMap ${configName}`).toBeDefined();
    const data = configMap!.data as Record<string, string>;
    for (const key of Object.keys(data)) expect(known, `${name}: ${key}`).toContain(key);
    const env = (sidecar.env ?? []) as { name: string; value?: string }[];
    // Every variable is the sidecar's, or only there to be expanded into one (REDIS_PASSWORD into REDIS_URL).
    const expanded = (variable: string) => env.some((e) => e.value?.includes(`$(${variable})`));
    for (const { name: variable } of env) if (!expanded(variable)) expect(known, `${name}: ${variable}`).toContain(variable);
    const redisUrlAt = env.findIndex((e) => e.name === 'REDIS_URL');
    if (redisUrlAt >= 0) expect(env.findIndex((e) => e.name === 'REDIS_PASSWORD')).toBeLessThan(redisUrlAt);
    const values = Object.fromEntries(env.filter((e) => e.value !== undefined).map((e) => [e.name, e.value!]));
    const config = { ...data, ...values };
    if (config.REDIS_URL) config.REDIS_URL = config.REDIS_URL.replace('$(REDIS_PASSWORD)', 'password');
    // Further issuers: a ConfigMap of this server mounted as a directory, holding the file the
    // sidecar reads at start-up; loaded here from a copy, as the sidecar would read it.
    const mountedFile = (path: string, kind: string) => {
      const mount = (sidecar.volumeMounts ?? []).find((m: any) => m.mountPath === dirname(path));
      expect(mount, `${name}: ${kind}'s directory is mounted`).toMatchObject({ readOnly: true });
      const volume = (pod.volumes ?? []).find((v: any) => v.name === mount.name);
      const configMap = find('ConfigMap', namespace, volume?.configMap?.name);
      expect(configMap, `${name}: the ${kind} ConfigMap`).toBeDefined();
      const text = configMap!.data[basename(path)] as string;
      expect(text, `${name}: ${kind} in its ConfigMap`).toBeTypeOf('string');
      return { configMap: configMap!, text };
    };
    let attachedIssuers: AttachedSidecar['issuers'];
    const copies = mkdtempSync(join(tmpdir(), 'issuers-'));
    let loaded;
    try {
      if (config.ISSUERS_FILE) {
        attachedIssuers = mountedFile(config.ISSUERS_FILE, 'issuers');
        expect(attachedIssuers.configMap.metadata.name).toContain(`${name}-auth-sidecar-issuers`);
        config.ISSUERS_FILE = join(copies, 'issuers.yaml');
        writeFileSync(config.ISSUERS_FILE, attachedIssuers.text);
      }
      loaded = loadConfig(config);
    } finally {
      rmSync(copies, { recursive: true, force: true });
    }
    const ports = Object.fromEntries((sidecar.ports as { name: string; containerPort: number }[]).map((p) => [p.name, p.containerPort]));
    expect(ports, `${name}: the sidecar's ports are PORT and ADMIN_PORT`).toEqual({ proxy: loaded.port, admin: loaded.adminPort });
    expect(data.PORT, `${name}: PORT set in the ConfigMap`).toBe(String(loaded.port));
    expect(data.ADMIN_PORT, `${name}: ADMIN_PORT set in the ConfigMap`).toBe(String(loaded.adminPort));
    const containerPorts = all.flatMap((c) => (c.ports ?? []).map((p: { containerPort: number }) => p.containerPort));
    expect(new Set(containerPorts).size, `${name}: no two containers use one port`).toBe(containerPorts.length);
    const serverPorts = all.filter((c) => c !== sidecar).flatMap((c) => (c.ports ?? []).map((p: any) => p.containerPort));
    expect(serverPorts, `${name}: UPSTREAM_URL is the server's port`).toContain(Number(new URL(loaded.upstreamUrl).port));

    // The container itself: probes on the admin port, locked down, drained within the grace period.
    expect(sidecar.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'admin' });
    expect(sidecar.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'admin' });
    expect(sidecar.securityContext).toEqual({
      runAsNonRoot: true,
      runAsUser: 10001,
      runAsGroup: 10001,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(
      Number(sidecar.lifecycle.preStop.exec.command[1]) + loaded.shutdownGraceSeconds,
    );

    // The Service it answers behind: its port mcp leads to the sidecar, its other ports elsewhere.
    const annotations = deployment.spec.template.metadata.annotations as Record<string, string>;
    const service = find('Service', namespace, annotations['mcp-auth-sidecar/service']!)!;
    expect(service, `${name}: the Service in its annotation`).toBeDefined();
    expect(annotations['mcp-auth-sidecar/resource-url']).toBe(data.RESOURCE_URL);
    expect(selects(service.spec.selector, podLabels), `${name}: its Service selects its pods`).toBe(true);
    const servicePorts = service.spec.ports as { name: string; targetPort: number | string }[];
    expect(servicePorts.find((p) => p.name === 'mcp')?.targetPort, `${name}: Service port mcp`).toBe(loaded.port);
    for (const other of servicePorts.filter((p) => p.name !== 'mcp'))
      expect([loaded.port, loaded.adminPort, 'proxy', 'admin'], `${name}: Service port ${other.name}`).not.toContain(other.targetPort);

    // NetworkPolicy and PodMonitor of this server: its pods, its ports, its label.
    const policy = find('NetworkPolicy', namespace, `${name}-auth-sidecar`);
    expect(policy, `${name}: NetworkPolicy ${name}-auth-sidecar`).toBeDefined();
    expect(policy!.spec.podSelector.matchLabels).toEqual(selector);
    const ingress = policy!.spec.ingress as { ports: { port: number }[]; from?: any[] }[];
    expect(ingress.map((rule) => rule.ports.map((p) => p.port))).toEqual([[loaded.port], [loaded.adminPort]]);
    expect(ingress[0]!.from).toBeUndefined();
    expect(ingress[1]!.from).toEqual([{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }]);
    const monitor = find('PodMonitor', namespace, `${name}-auth-sidecar`);
    expect(monitor, `${name}: PodMonitor ${name}-auth-sidecar`).toBeDefined();
    expect(monitor!.spec.selector.matchLabels).toEqual(selector);
    const [endpoint] = monitor!.spec.podMetricsEndpoints;
    expect(endpoint).toMatchObject({ port: 'admin', path: '/metrics' });
    expect(endpoint.relabelings).toContainEqual({ action: 'replace', targetLabel: 'mcp_auth_sidecar', replacement: name });

    // The tool policy: a ConfigMap of this server mounted as a directory (never subPath), holding the file.
    for (const mount of sidecar.volumeMounts ?? []) expect(mount.subPath, `${name}: ${mount.name} mounted whole`).toBeUndefined();
    let attachedPolicy: AttachedSidecar['policy'];
    if (loaded.policyFile !== undefined) {
      attachedPolicy = mountedFile(loaded.policyFile, 'policy');
      expect(attachedPolicy.configMap.metadata.name).toContain(`${name}-auth-sidecar-policy`);
      expect(() => parsePolicy(attachedPolicy!.text, loaded.policyFile)).not.toThrow();
    }

    // Redis: the Service REDIS_URL names, its StatefulSet's pods, reachable by this server's pods only.
    let redis: AttachedSidecar['redis'];
    if (loaded.redisUrl !== undefined) {
      const host = new URL(config.REDIS_URL!).hostname;
      const redisService = find('Service', namespace, host);
      expect(redisService, `${name}: Redis Service ${host}`).toBeDefined();
      expect(host).toBe(`${name}-rate-limit-redis`);
      const statefulSet = inNamespace(namespace).find(
        (o) => o.kind === 'StatefulSet' && selects(redisService!.spec.selector, o.spec.template.metadata.labels),
      );
      expect(statefulSet, `${name}: the Redis its Service selects`).toBeDefined();
      const secret = (sidecar.env as any[]).find((e) => e.name === 'REDIS_PASSWORD').valueFrom.secretKeyRef;
      const redisSecret = statefulSet!.spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef;
      expect(redisSecret).toEqual(secret);
      if (options.secretsRendered) expect(find('Secret', namespace, secret.name), `${name}: Secret ${secret.name}`).toBeDefined();
      const redisPolicy = find('NetworkPolicy', namespace, `${name}-rate-limit-redis`);
      expect(redisPolicy?.spec.podSelector.matchLabels).toEqual(statefulSet!.spec.selector.matchLabels);
      expect(redisPolicy?.spec.ingress).toEqual([
        { from: [{ podSelector: { matchLabels: selector } }], ports: [{ port: 6379, protocol: 'TCP' }] },
      ]);
      redis = { statefulSet: statefulSet!, service: redisService!, networkPolicy: redisPolicy!, secret: secret.name };
    }
    found.push({ name, namespace, native, sidecar, pod, config: data, service, policy: attachedPolicy, issuers: attachedIssuers, redis });
  }

  // Each selector selects the pods of one workload only: no Service, NetworkPolicy or PodMonitor
  // of one server reaches another server's (or another Redis's) pods in the same namespace.
  for (const object of objects) {
    const selector =
      object.kind === 'Service'
        ? object.spec.selector
        : object.kind === 'NetworkPolicy'
          ? object.spec.podSelector.matchLabels
          : object.kind === 'PodMonitor'
            ? object.spec.selector.matchLabels
            : undefined;
    if (selector === undefined) continue;
    const workloads = inNamespace(object.metadata.namespace).filter(
      (o) => (o.kind === 'Deployment' || o.kind === 'StatefulSet') && selects(selector, o.spec.template.metadata.labels),
    );
    expect(
      workloads.map((w) => w.metadata.name),
      `${object.kind}/${object.metadata.name} selects one workload`,
    ).toHaveLength(1);
  }
  return found;
}
