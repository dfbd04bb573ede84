import { afterAll, describe, expect, it } from 'vitest';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { checkSidecars, kustomize, kustomizeFailure, kustomizeTool, type Manifest } from '../helpers/manifests.js';

// k8s/components/tracing: the sidecar sends its spans to the collector on its node, named after
// its Deployment and pod, in both the plain and the native form; listed before the sidecar, it
// fails rendering instead of adding a container without an image.

const REPO = resolve(import.meta.dirname, '../..');
const scratch: string[] = [];
afterAll(() => {
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

/** k8s/example in a temporary folder, with these components (and more patches), still pointing at this repo's. */
function example(components: string[], patches = ''): string {
  const dir = mkdtempSync(join(tmpdir(), 'kustomize-tracing-'));
  scratch.push(dir);
  cpSync(join(REPO, 'k8s/example'), dir, { recursive: true });
  const file = join(dir, 'kustomization.yaml');
  const base = relative(dir, join(REPO, 'k8s'));
  const text = readFileSync(file, 'utf8')
    .replace('  - ../monitoring\n', '')
    .replace(
      /components:\n {2}- \.\.\/components\/auth-sidecar\n/,
      `components:\n${components.map((c) => `  - ${base}/components/${c}\n`).join('')}`,
    );
  writeFileSync(file, text + patches);
  return dir;
}

const sidecarOf = (objects: Manifest[]) => {
  const pod = objects.find((o) => o.kind === 'Deployment')!.spec.template.spec;
  return [...(pod.initContainers ?? []), ...pod.containers].find((c: { name: string }) => c.name === 'auth-sidecar');
};

describe.skipIf(!kustomizeTool)('k8s/components/tracing', () => {
  it.each([
    ['plain', ['auth-sidecar', 'tracing']],
    ['native', ['auth-sidecar', 'tracing', 'auth-sidecar-native']],
  ])('%s: the node’s collector, the Deployment’s name, the pod’s resource', (_form, components) => {
    const objects = kustomize(example(components));
    checkSidecars(objects, { secretsRendered: true });
    const env = Object.fromEntries(
      (sidecarOf(objects).env as { name: string; value?: string; valueFrom?: { fieldRef: { fieldPath: string } } }[]).map((e) => [
        e.name,
        e.value ?? `fieldRef:${e.valueFrom!.fieldRef.fieldPath}`,
      ]),
    );
    expect(env).toMatchObject({
      HOST_IP: 'fieldRef:status.hostIP',
      POD_NAME: 'fieldRef:metadata.name',
      POD_NAMESPACE: 'fieldRef:metadata.namespace',
      NODE_NAME: 'fieldRef:spec.nodeName',
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://$(HOST_IP):4318',
      OTEL_SERVICE_NAME: 'datastore-mcp-auth-sidecar',
      OTEL_RESOURCE_ATTRIBUTES:
        'k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE),k8s.node.name=$(NODE_NAME),k8s.deployment.name=datastore-mcp',
    });
    // Kubernetes expands $(VAR) only from variables defined earlier in the list.
    const names = Object.keys(env);
    expect(names.indexOf('HOST_IP')).toBeLessThan(names.indexOf('OTEL_EXPORTER_OTLP_ENDPOINT'));
    expect(names.indexOf('NODE_NAME')).toBeLessThan(names.indexOf('OTEL_RESOURCE_ATTRIBUTES'));
  });

  it('a collector behind a Service: the patch of docs/kubernetes.md replaces the endpoint', () => {
    const patch = [
      '  - target: { kind: Deployment }',
      '    patch: |-',
      '      apiVersion: apps/v1',
      '      kind: Deployment',
      '      metadata: { name: datastore-mcp }',
      '      spec:',
      '        template:',
      '          spec:',
      '            containers:',
      '              - name: auth-sidecar',
      '                env:',
      '                  - name: OTEL_EXPORTER_OTLP_ENDPOINT',
      '                    value: http://otel-collector.observability.svc:4318',
      '',
    ].join('\n');
    const objects = kustomize(example(['auth-sidecar', 'tracing'], patch));
    const env = sidecarOf(objects).env as { name: string; value?: string }[];
    expect(env.filter((e) => e.name === 'OTEL_EXPORTER_OTLP_ENDPOINT')).toEqual([
      { name: 'OTEL_EXPORTER_OTLP_ENDPOINT', value: 'http://otel-collector.observability.svc:4318' },
    ]);
  });

  it('listed before the sidecar: rendering fails, no image-less container is added', () => {
    const failed = kustomizeFailure(example(['tracing', 'auth-sidecar']));
    expect(failed.status).not.toBe(0);
    expect(failed.stderr).toContain('fieldPath `spec.template.spec.containers.[name=auth-sidecar].image` is missing');
  });
});
