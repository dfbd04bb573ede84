// External tools the tests use. .ci/run installs every one of them; on a machine without one,
// the tests that need it are skipped with a line naming the tool and how to install it, and with
// CI=true a missing tool is a failure (a skipped interop test proves nothing).

import { execFileSync } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';

/** How to install each tool the tests use (Debian, as root; .ci/run does the same). */
export const INSTALL: Record<string, string> = {
  prometheus: 'apt-get install prometheus',
  promtool: 'apt-get install prometheus',
  'redis-server': 'apt-get install redis-server',
  'redis-sentinel': 'apt-get install redis-sentinel',
  'redis-cli': 'apt-get install redis-tools',
  kubectl:
    "kubectl 1.21 or newer, or kustomize: GOBIN=/usr/local/bin go install sigs.k8s.io/kustomize/kustomize/v5@v5.7.1 (Debian's kubernetes-client is 1.20, without kustomize components)",
  go: 'the Go toolchain >= 1.25 (Debian 12 golang-go is 1.19, too old)',
  helm: 'GOBIN=/usr/local/bin go install -ldflags "-X helm.sh/helm/v4/internal/version.version=v4.3.2" helm.sh/helm/v4/cmd/helm@v4.3.2',
  actionlint: 'GOBIN=/usr/local/bin go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12',
  java: 'apt-get install openjdk-17-jre-headless',
  mvn: 'apt-get install maven',
  openssl: 'apt-get install openssl',
  keycloak: 'scripts/fetch-keycloak.sh (needs mvn and java)',
  jaeger:
    'Jaeger all-in-one v1.75.0 (as .ci/run builds it): go mod download github.com/jaegertracing/jaeger@v1.75.0, then go build -o ~/go/bin/jaeger ./cmd/jaeger in that module',
  conformance:
    'the MCP conformance suite on Node >= 22, as .ci/run installs them: Node 24 in .ci/node24, @modelcontextprotocol/conformance in .ci/conformance',
};

/** Set by test/helpers/skip-reporter.ts: the file each skip is appended to, for the run's one summary line. */
export const SKIPS_FILE_VARIABLE = 'MCP_TEST_SKIPS_FILE';

function lookup(name: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * The path of a command, or undefined when it is absent: the caller skips its tests
 * (`describe.skipIf(!path)`); the run ends with one line naming it and its install command;
 * under CI=true an absent tool throws instead, so the run fails.
 */
export function findTool(name: string): string | undefined {
  const path = lookup(name);
  if (path !== undefined) return path;
  skipMissing(name);
  return undefined;
}

/**
 * Records that the tests needing `name` (a tool or a system such as Keycloak) are skipped: one line
 * in the run's summary (or on stderr outside vitest's reporter); under CI=true it throws instead.
 */
export function skipMissing(name: string): void {
  const install = INSTALL[name] ?? `install ${name}`;
  if (process.env.CI === 'true') throw new Error(`${name} is not installed and CI=true: install: ${install}`);
  const file = process.env[SKIPS_FILE_VARIABLE];
  if (file) appendFileSync(file, `${JSON.stringify({ name, install })}\n`);
  else process.stderr.write(`skipped: tests that need ${name} (install: ${install})\n`);
}

/** A port that was free a moment ago, for servers that must know their URL before they start. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
