// Builds and starts the real app on port 0 with a config from env-style overrides.

import { loadConfig } from '../../src/config/config.js';
import { buildApp, type App, type AppOptions } from '../../src/app.js';
import { createLogger } from '../../src/observability/log.js';
import type { TestIssuer } from './issuer.js';
import type { TestUpstream } from './upstream.js';

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
