// A local OpenID issuer whose keys and behaviour the test controls: discovery, JWKS, and
// Keycloak-shaped tokens minted with jose.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, type JWK, type JWTPayload, type CryptoKey } from 'jose';

export interface SigningKey {
  kid: string;
  alg: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export type JwksMode = 'ok' | 'status-503' | 'garbage' | 'hang' | 'huge' | 'refuse';

/** A token endpoint request as received: its headers and its form. */
export type TokenHandler = (request: { headers: IncomingMessage['headers']; form: URLSearchParams }, res: ServerResponse) => void;

export interface MintOptions {
  key?: SigningKey;
  /** Extra or replacing protected header parameters. */
  header?: Record<string, unknown>;
  /** Claims to remove from the default Keycloak-shaped set. */
  omit?: string[];
}

/**
 * The issuer's introspection endpoint (RFC 7662): a JWT it signed is active with its own claims
 * plus `extraClaims`, unless revoked; an opaque token is active when listed in `opaque`.
 */
export interface TestIntrospection {
  readonly endpoint: string;
  /** Client id and secret it accepts (HTTP Basic). */
  client: { id: string; secret: string };
  /** Claims added to every active answer (what a lightweight token leaves out). */
  extraClaims: Record<string, unknown>;
  /** Opaque tokens and their claims. */
  readonly opaque: Map<string, Record<string, unknown>>;
  readonly revoked: Set<string>;
  /** `down`: 503; `hang`: no answer; `garbage`: not JSON. */
  mode: 'ok' | 'down' | 'hang' | 'garbage';
  /** Calls answered or not, by token. */
  readonly calls: string[];
}

export interface TestIssuer {
  readonly url: string;
  readonly issuer: string;
  readonly jwksUri: string;
  readonly keys: SigningKey[];
  readonly requests: { discovery: number; jwks: number };
  readonly introspection: TestIntrospection;
  mode: JwksMode;
  /** Creates a key and publishes it (unless `publish` is false). */
  addKey(alg?: string, options?: { kid?: string; publish?: boolean }): Promise<SigningKey>;
  removeKey(kid: string): void;
  /** Publishes a key made with `publish: false`. */
  publishKey(kid: string): void;
  /** A Keycloak-shaped access token (azp coder, aud account, typ Bearer), claims overridable. */
  mint(claims?: JWTPayload & Record<string, unknown>, options?: MintOptions): Promise<string>;
  /** Answers the token endpoint (named in discovery) with `handler`; without one it answers 404. */
  handleToken(handler: TokenHandler | undefined): void;
  close(): Promise<void>;
}

export function keycloakClaims(issuer: string, nowSeconds = Math.floor(Date.now() / 1000)): JWTPayload & Record<string, unknown> {
  return {
    exp: nowSeconds + 300,
    iat: nowSeconds,
    jti: randomUUID(),
    iss: issuer,
    aud: 'account',
    sub: 'f0a4c2de-5b1e-4a7d-9c3b-2e8f1d6a7b90',
    typ: 'Bearer',
    azp: 'coder',
    sid: randomUUID(),
    scope: 'openid profile email',
    email_verified: true,
    preferred_username: 'alice',
    email: 'alice@example.com',
    groups: ['/alpha'],
    realm_access: { roles: ['offline_access', 'default-roles-coder'] },
  };
}

export async function createSigningKey(alg = 'RS256', kid: string = randomUUID()): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, publicJwk };
}

export async function startIssuer(options: { realmPath?: string } = {}): Promise<TestIssuer> {
  const keys: SigningKey[] = [];
  const published = new Set<string>();
  const requests = { discovery: 0, jwks: 0 };
  // Keycloak also publishes an encryption key; the sidecar must ignore it.
  const encKey = {
    ...(await exportJWK((await generateKeyPair('RSA-OAEP', { extractable: true })).publicKey)),
    kid: 'enc-key',
    alg: 'RSA-OAEP',
    use: 'enc',
  };
  const hanging = new Set<ServerResponse>();
  let url = '';
  const realmPath = options.realmPath ?? '/realms/coder';

  const state = {
    mode: 'ok' as JwksMode,
    token: undefined as TokenHandler | undefined,
  };
  const introspection: TestIntrospection = {
    endpoint: '',
    client: { id: 'mcp-sidecar', secret: 'sidecar-secret' },
    extraClaims: {},
    opaque: new Map(),
    revoked: new Set(),
    mode: 'ok',
    calls: [],
  };
  const introspect = (req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      const token = new URLSearchParams(body).get('token') ?? '';
      introspection.calls.push(token);
      if (introspection.mode === 'hang') return void hanging.add(res);
      if (introspection.mode === 'down') {
        res.statusCode = 503;
        return void res.end('down');
      }
      res.setHeader('content-type', 'application/json');
      if (introspection.mode === 'garbage') return void res.end('<html>');
      const [scheme, credentials] = (req.headers.authorization ?? '').split(' ');
      const [id, secret] = Buffer.from(credentials ?? '', 'base64')
        .toString()
        .split(':')
        .map((part) => decodeURIComponent(part.replace(/\+/g, ' ')));
      if (scheme !== 'Basic' || id !== introspection.client.id || secret !== introspection.client.secret) {
        res.statusCode = 401;
        return void res.end('{"error":"invalid_client"}');
      }
      let claims: Record<string, unknown> | undefined = introspection.opaque.get(token);
      if (claims === undefined && token.split('.').length === 3) {
        try {
          claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
        } catch {
          claims = undefined;
        }
      }
      const active = claims !== undefined && !introspection.revoked.has(token);
      res.end(JSON.stringify(active ? { ...claims, ...introspection.extraClaims, active: true } : { active: false }));
    });
  };

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const issuer = `${url}${realmPath}`;
    if (req.url === `${realmPath}/.well-known/openid-configuration`) {
      requests.discovery++;
      if (state.mode === 'refuse') return void req.socket.destroy();
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          issuer,
          jwks_uri: `${issuer}/protocol/openid-connect/certs`,
          token_endpoint: `${issuer}/protocol/openid-connect/token`,
          introspection_endpoint: `${issuer}/protocol/openid-connect/token/introspect`,
          id_token_signing_alg_values_supported: ['RS256'],
        }),
      );
      return;
    }
    if (req.url === `${realmPath}/protocol/openid-connect/token` && req.method === 'POST' && state.token !== undefined) {
      const handler = state.token;
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => handler({ headers: req.headers, form: new URLSearchParams(Buffer.concat(chunks).toString()) }, res));
      return;
    }
    if (req.url === `${realmPath}/protocol/openid-connect/token/introspect` && req.method === 'POST') return introspect(req, res);
    if (req.url === `${realmPath}/protocol/openid-connect/certs`) {
      requests.jwks++;
      switch (state.mode) {
        case 'refuse':
          return void req.socket.destroy();
        case 'status-503':
          res.statusCode = 503;
          return void res.end('down');
        case 'garbage':
          res.setHeader('content-type', 'application/json');
          return void res.end('{"keys": [oops');
        case 'hang':
          hanging.add(res);
          return;
        case 'huge': {
          res.setHeader('content-type', 'application/json');
          const chunk = Buffer.alloc(1 << 20, 0x20);
          let sent = 0;
          const write = () => {
            while (sent < 50 && res.write(chunk)) sent++;
            if (sent >= 50) res.end();
            else res.once('drain', write);
          };
          res.on('close', () => {
            sent = 50;
          });
          return void write();
        }
        default: {
          const jwks = { keys: [...keys.filter((k) => published.has(k.kid)).map((k) => k.publicJwk), encKey] };
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify(jwks));
        }
      }
      return;
    }
    res.statusCode = 404;
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const issuer = `${url}${realmPath}`;
  (introspection as { endpoint: string }).endpoint = `${issuer}/protocol/openid-connect/token/introspect`;

  const api: TestIssuer = {
    url,
    issuer,
    jwksUri: `${issuer}/protocol/openid-connect/certs`,
    keys,
    requests,
    introspection,
    get mode() {
      return state.mode;
    },
    set mode(mode: JwksMode) {
      state.mode = mode;
      if (mode !== 'hang' && introspection.mode !== 'hang') for (const res of hanging) res.destroy();
    },
    async addKey(alg = 'RS256', { kid, publish = true } = {}) {
      const key = await createSigningKey(alg, kid);
      keys.push(key);
      if (publish) published.add(key.kid);
      return key;
    },
    removeKey(kid) {
      published.delete(kid);
    },
    publishKey(kid) {
      published.add(kid);
    },
    async mint(claims = {}, { key = keys[0], header = {}, omit = [] } = {}) {
      if (!key) throw new Error('the test issuer has no key: call addKey first');
      const payload: Record<string, unknown> = { ...keycloakClaims(issuer), ...claims };
      for (const name of omit) delete payload[name];
      return new SignJWT(payload as JWTPayload)
        .setProtectedHeader({ alg: key.alg, typ: 'JWT', kid: key.kid, ...header } as never)
        .sign(key.privateKey);
    },
    handleToken(handler) {
      state.token = handler;
    },
    async close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return api;
}
