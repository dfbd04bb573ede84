// The run's Keycloak (started once by stack-setup.ts) as the tests use it: a realm of their own
// imported from examples/keycloak/realm-coder.json, real tokens from its token endpoint, and the
// admin REST calls for lifespans and signing keys.
//
//   const keycloak = useKeycloak();                  // undefined: skipped (one line; CI=true fails)
//   describe.skipIf(!keycloak)('...', () => {
//     beforeAll(async () => { realm = await importRealm('coder'); }, 240_000);
//     const { access_token } = await realm.tokens('alice');      // azp=coder, groups ['/alpha']

import { readFileSync } from 'node:fs';
import { inject } from 'vitest';
import { KEYCLOAK_ADMIN } from './stack-setup.js';
import { skipMissing } from './tools.js';

export interface KeycloakServer {
  url: string;
  managementUrl: string;
  pid: number;
  log: string;
}

export interface TokenSet {
  access_token: string;
  id_token: string;
  refresh_token: string;
  expires_in: number;
}

export interface TokenOptions {
  /** Default `${user}-password`, as in the realm file. */
  password?: string;
  /** Space-separated scopes; `openid` is always requested. `datastore-mcp` adds the audience. */
  scope?: string;
  clientId?: string;
  clientSecret?: string;
}

export interface KeyProvider {
  id: string;
  name: string;
  /** The kid of the key it signs with. */
  kid: string;
}

export interface Realm {
  name: string;
  /** OIDC_ISSUER for this realm. */
  issuer: string;
  jwksUri: string;
  tokens(user: string, options?: TokenOptions): Promise<TokenSet>;
  refresh(refreshToken: string, options?: TokenOptions): Promise<TokenSet>;
  /** PUT a partial realm representation (e.g. { accessTokenLifespan: 2 }). */
  update(patch: Record<string, unknown>): Promise<void>;
  /** Adds an rsa-generated key provider; the highest priority active key signs new tokens. */
  addRsaKey(name: string, priority: number): Promise<KeyProvider>;
  /** Sets a key provider's `active` and `enabled` (inactive: verifies only; disabled: gone from the JWKS). */
  setKey(id: string, state: { active?: boolean; enabled?: boolean }): Promise<void>;
  removeKey(id: string): Promise<void>;
  /** The realm's key providers for signing, with their kid. */
  signingKeys(): Promise<KeyProvider[]>;
  delete(): Promise<void>;
}

/** The client secret of `coder` in examples/keycloak/realm-coder.json. */
export const CODER_CLIENT_SECRET = 'coder-client-secret';

const info = inject('keycloak');

/** The run's Keycloak, or undefined when it is absent (recorded as a skip; CI=true throws). */
export function useKeycloak(): KeycloakServer | undefined {
  if (info === null) throw new Error('stack-setup did not start Keycloak for this file: does it import ../helpers/keycloak.js?');
  if ('missing' in info) {
    skipMissing(info.missing);
    return undefined;
  }
  return info;
}

function server(): KeycloakServer {
  if (!info || 'missing' in info) throw new Error('Keycloak is not available');
  return info;
}

/** Waits (bounded) until Keycloak answers ready, failing at once if its process has exited. */
export async function waitForKeycloak(timeoutMs = 240_000): Promise<void> {
  const { managementUrl, pid, log } = server();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch {
      throw new Error(`Keycloak exited; its log:\n${readFileSync(log, 'utf8').slice(-4000)}`);
    }
    const ready = await fetch(`${managementUrl}/health/ready`).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) return;
    if (Date.now() > deadline)
      throw new Error(`Keycloak not ready after ${timeoutMs} ms; its log:\n${readFileSync(log, 'utf8').slice(-4000)}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

async function adminToken(): Promise<string> {
  const response = await fetch(`${server().url}/realms/master/protocol/openid-connect/token`, {
    method: 'POST',
    body: new URLSearchParams({ grant_type: 'password', client_id: 'admin-cli', ...KEYCLOAK_ADMIN }),
  });
  if (!response.ok) throw new Error(`admin token: ${response.status} ${await response.text()}`);
  return ((await response.json()) as { access_token: string }).access_token;
}

/** An admin REST call (path below /admin/realms); throws on a status other than 2xx. */
export async function admin(method: string, path: string, body?: unknown): Promise<unknown> {
  const response = await fetch(`${server().url}/admin/realms${path}`, {
    method,
    headers: { authorization: `Bearer ${await adminToken()}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (!response.ok) throw new Error(`${method} /admin/realms${path}: ${response.status} ${await response.text()}`);
  const text = await response.text();
  return text ? JSON.parse(text) : undefined;
}

/** The realm file as docs/kubernetes.md's Keycloak set-up gives it. */
export function realmFile(): Record<string, any> {
  return JSON.parse(readFileSync(new URL('../../examples/keycloak/realm-coder.json', import.meta.url), 'utf8'));
}

/**
 * Imports the realm file under `name` (replacing a realm of that name), with the password grant
 * enabled on `coder` so the tests can take tokens without a browser: tokens of the `coder` client,
 * so `azp` is `coder` as in the tokens Coder forwards. `edit` may change the representation first.
 */
export async function importRealm(name: string, edit: (realm: Record<string, any>) => void = () => {}): Promise<Realm> {
  await waitForKeycloak();
  const representation = realmFile();
  representation.realm = name;
  for (const client of representation.clients) if (client.clientId === 'coder') client.directAccessGrantsEnabled = true;
  edit(representation);
  const existing = (await admin('GET', '')) as { realm: string }[];
  if (existing.some((r) => r.realm === name)) await admin('DELETE', `/${name}`);
  await admin('POST', '', representation);
  return realmHandle(name);
}

function realmHandle(name: string): Realm {
  const base = `${server().url}/realms/${name}`;
  const tokenRequest = async (grant: Record<string, string>, options: TokenOptions): Promise<TokenSet> => {
    const response = await fetch(`${base}/protocol/openid-connect/token`, {
      method: 'POST',
      body: new URLSearchParams({
        client_id: options.clientId ?? 'coder',
        client_secret: options.clientSecret ?? CODER_CLIENT_SECRET,
        ...grant,
      }),
    });
    if (!response.ok) throw new Error(`token endpoint of ${name}: ${response.status} ${await response.text()}`);
    return (await response.json()) as TokenSet;
  };
  const signingKeys = async (): Promise<KeyProvider[]> => {
    const keys = (await admin('GET', `/${name}/keys`)) as { keys: { kid: string; use: string; providerId: string; algorithm: string }[] };
    const components = (await admin('GET', `/${name}/components?type=org.keycloak.keys.KeyProvider`)) as { id: string; name: string }[];
    return keys.keys
      .filter((k) => k.use === 'SIG' && k.algorithm === 'RS256')
      .map((k) => ({ id: k.providerId, kid: k.kid, name: components.find((c) => c.id === k.providerId)?.name ?? '' }));
  };
  return {
    name,
    issuer: base,
    jwksUri: `${base}/protocol/openid-connect/certs`,
    tokens: (user, options = {}) =>
      tokenRequest(
        {
          grant_type: 'password',
          username: user,
          password: options.password ?? `${user}-password`,
          scope: ['openid', options.scope ?? ''].join(' ').trim(),
        },
        options,
      ),
    refresh: (refreshToken, options = {}) => tokenRequest({ grant_type: 'refresh_token', refresh_token: refreshToken }, options),
    update: async (patch) => {
      await admin('PUT', `/${name}`, patch);
    },
    addRsaKey: async (providerName, priority) => {
      const realmId = ((await admin('GET', `/${name}`)) as { id: string }).id;
      await admin('POST', `/${name}/components`, {
        name: providerName,
        providerId: 'rsa-generated',
        providerType: 'org.keycloak.keys.KeyProvider',
        parentId: realmId,
        config: { priority: [String(priority)], enabled: ['true'], active: ['true'], algorithm: ['RS256'], keySize: ['2048'] },
      });
      const added = (await signingKeys()).find((k) => k.name === providerName);
      if (!added) throw new Error(`key provider ${providerName} not listed after adding it`);
      return added;
    },
    setKey: async (id, state) => {
      const component = (await admin('GET', `/${name}/components/${id}`)) as { config: Record<string, string[]> };
      if (state.active !== undefined) component.config.active = [String(state.active)];
      if (state.enabled !== undefined) component.config.enabled = [String(state.enabled)];
      await admin('PUT', `/${name}/components/${id}`, component);
    },
    removeKey: async (id) => {
      await admin('DELETE', `/${name}/components/${id}`);
    },
    signingKeys,
    delete: async () => {
      await admin('DELETE', `/${name}`);
    },
  };
}
