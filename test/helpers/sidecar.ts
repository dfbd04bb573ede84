// Builds and starts the real app on port 0 with a config from env-style overrides, alone or
// with a test issuer and an upstream (startStack).

import { loadConfig } from '../../src/config/config.js';
import { buildApp, type App, type AppOptions } from '../../src/app.js';
import { createLogger } from '../../src/observability/log.js';
import { startIssuer, type TestIssuer } from './issuer.js';
import { startUpstream, type TestUpstream } from './upstream.js';

export interface RunningSidecar {
  app: App;
  url: string;
  adminUrl: string;
  close(): Promise<void>;
}

/** The env a test sidecar starts from: loopback, free ports, silent logs, Coder's azp. */
/** `issuer`: the test issuer or a Keycloak realm (anything with its issuer URL). */
export function testEnv(
  issuer: Pick<TestIssuer, 'issuer'>,
  upstream: TestUpstream | { url: string },
  env: Record<string, string> = {},
): Record<string, string> {
  return {
    OIDC_ISSUER: issuer.issuer,
    OIDC_ALLOWED_AZP: 'coder',
    UPSTREAM_URL: upstream.url,
    PORT: '0',
    HOST: '127.0.0.1',
    ADMIN_PORT: '0',
    ADMIN_HOST: '127.0.0.1',
    LOG_LEVEL: 'silent',
    RESOURCE_URL: 'http://mcp.test:8080',
    ...env,
  };
}

export async function startSidecar(env: Record<string, string>, options: AppOptions = {}): Promise<RunningSidecar> {
  const config = loadConfig(env);
  const app = await buildApp(config, { logger: createLogger(config.logLevel), ...options });
  const { proxyUrl, adminUrl } = await app.listen();
  return { app, url: proxyUrl, adminUrl, close: () => app.close() };
}

/** What many tests start: a test issuer with a key, the echoing upstream, a sidecar in front of them. */
export interface TestStack {
  issuer: TestIssuer;
  upstream: TestUpstream;
  sidecar: RunningSidecar;
  /** Closes the sidecar, then the upstream and the issuer. */
  close(): Promise<void>;
}

/** Starts a TestStack, its sidecar with `env` over testEnv and the app's `options`; a failure closes what started. */
export async function startStack(env: Record<string, string> = {}, options: AppOptions = {}): Promise<TestStack> {
  const issuer = await startIssuer();
  let upstream: TestUpstream | undefined;
  try {
    await issuer.addKey();
    upstream = await startUpstream();
    const sidecar = await startSidecar(testEnv(issuer, upstream, env), options);
    return {
      issuer,
      upstream,
      sidecar,
      async close() {
        await sidecar.close();
        await upstream!.close();
        await issuer.close();
      },
    };
  } catch (error) {
    await upstream?.close();
    await issuer.close();
    throw error;
  }
}
