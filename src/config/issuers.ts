// The trusted issuers: the first from the OIDC_* variables, the others from ISSUERS_FILE (a YAML
// list). Each issuer has its own key set, audiences, user claim, token type, required groups or
// roles and, optionally, token introspection (RFC 7662) and the token exchange of its tokens for
// the upstream's (UPSTREAM_TOKEN=exchange). The file is read once at start-up: every problem is
// reported with its line and column, with the rest of the configuration's problems.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';
import type { Node, YAMLMap } from 'yaml';
import { show, type Kind } from './kinds.js';

export type IntrospectionWhen = 'missing-claims' | 'always';

export interface IntrospectionSettings {
  /** The introspection endpoint; undefined: `introspection_endpoint` of the issuer's discovery document. */
  readonly endpoint: string | undefined;
  readonly clientId: string;
  /** A file holding the client secret (a mounted Secret): re-read when it changes. */
  readonly clientSecretFile: string;
  /** `missing-claims`: only when the token lacks a claim the configuration needs; `always`: every new token (opaque ones too). */
  readonly when: IntrospectionWhen;
}

/** UPSTREAM_TOKEN=exchange for one issuer's tokens: at its own token endpoint, as its own client. */
export interface TokenExchangeSettings {
  /** The upstream's client in this issuer (`audience` of the exchange). */
  readonly audience: string;
  readonly clientId: string;
  /** A file holding the client secret (a mounted Secret): re-read when it changes. */
  readonly clientSecretFile: string;
}

export interface TrustedIssuer {
  readonly issuer: string;
  readonly jwksUri: string | undefined;
  readonly audiences: readonly string[];
  readonly allowedAzp: readonly string[];
  readonly userClaim: string;
  /** Required `typ` claim; empty: not checked. */
  readonly tokenType: string;
  readonly requiredGroups: readonly string[];
  readonly requiredRoles: readonly string[];
  readonly introspection: IntrospectionSettings | undefined;
  /**
   * Undefined: no `tokenExchange` section; null: a section with problems (already reported, so
   * the configuration is refused: only the checks between variables ever see null).
   */
  readonly tokenExchange: TokenExchangeSettings | null | undefined;
}

/** Further issuers at most: each has a key set, refreshed on a timer. */
export const MAX_ISSUERS = 50;
const ENTRY_KEYS = [
  'issuer',
  'jwksUri',
  'audiences',
  'allowedAzp',
  'userClaim',
  'tokenType',
  'requiredGroups',
  'requiredRoles',
  'introspection',
  'tokenExchange',
] as const;
const INTROSPECTION_KEYS = ['endpoint', 'clientId', 'clientSecretFile', 'when'] as const;
const TOKEN_EXCHANGE_KEYS = ['audience', 'clientId', 'clientSecretFile'] as const;
const WHEN: readonly IntrospectionWhen[] = ['missing-claims', 'always'];

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hash === '' && url.username === '' && url.password === '';
  } catch {
    return false;
  }
}

// The YAML library is loaded on the first ISSUERS_FILE read, synchronously as configuration is:
// a sidecar with one issuer and no policy never loads it.
let loadedYaml: typeof Yaml | undefined;
const yaml = (): typeof Yaml => (loadedYaml ??= createRequire(import.meta.url)('yaml') as typeof Yaml);

/** The issuers of an ISSUERS_FILE's text; `problem` is told each thing wrong, with its position. */
export function parseIssuers(text: string, problem: (line: number, column: number, message: string) => void): TrustedIssuer[] {
  const lines = new (yaml().LineCounter)();
  const doc = yaml().parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  const at = (node: Node | null | undefined, message: string) => {
    const { line, col } = lines.linePos(node?.range?.[0] ?? 0);
    problem(line, col, message);
  };
  for (const error of doc.errors) {
    const { line, col } = lines.linePos(error.pos[0]);
    problem(line, col, error.message.split('\n')[0]!);
  }
  if (doc.errors.length > 0) return [];
  const root = doc.contents;
  if (root === null) return [];
  if (!yaml().isSeq(root)) {
    at(root, 'expected a list of issuers (- issuer: https://...)');
    return [];
  }
  if (root.items.length > MAX_ISSUERS) at(root, `at most ${MAX_ISSUERS} issuers`);
  const issuers: TrustedIssuer[] = [];
  const seen = new Set<string>();
  for (const item of root.items as (Node | null)[]) {
    if (!yaml().isMap(item)) {
      at(item ?? root, 'an issuer is a mapping with at least issuer: and audiences: or allowedAzp:');
      continue;
    }
    const read = fields(item, ENTRY_KEYS, 'an issuer', at);
    const issuer = read.text('issuer');
    if (issuer === undefined) {
      at(item, 'issuer: is required (the exact iss of its tokens)');
      continue;
    }
    if (!isHttpUrl(issuer)) read.wrong('issuer', 'an absolute http(s) URL');
    if (seen.has(issuer)) read.wrong('issuer', 'an issuer listed once (it is already trusted)');
    seen.add(issuer);
    const jwksUri = read.text('jwksUri');
    if (jwksUri !== undefined && !isHttpUrl(jwksUri)) read.wrong('jwksUri', 'an absolute http(s) URL');
    const audiences = read.list('audiences');
    const allowedAzp = read.list('allowedAzp');
    if (audiences.length === 0 && allowedAzp.length === 0) {
      at(item, `issuer ${show(issuer)}: audiences and allowedAzp are both empty: set at least one`);
    }
    issuers.push({
      issuer,
      jwksUri,
      audiences,
      allowedAzp,
      userClaim: read.text('userClaim') ?? 'preferred_username',
      tokenType: read.text('tokenType', true) ?? 'Bearer',
      requiredGroups: read.list('requiredGroups'),
      requiredRoles: read.list('requiredRoles'),
      introspection: read.introspection(),
      tokenExchange: read.tokenExchange(),
    });
  }
  return issuers;
}

type At = (node: Node | null | undefined, message: string) => void;

/** The values of one mapping, each checked for its type; unknown keys are reported. */
function fields(map: YAMLMap, known: readonly string[], what: string, at: At) {
  const values = new Map<string, Node | null>();
  for (const pair of map.items) {
    const key = yaml().isScalar(pair.key) ? String(pair.key.value) : '';
    if (!known.includes(key)) at(pair.key as Node, `unknown key ${show(key)} of ${what}: expected ${known.join(', ')}`);
    else values.set(key, pair.value as Node | null);
  }
  const wrong = (key: string, expected: string) => at(values.get(key) ?? map, `${key}: expected ${expected}`);
  return {
    wrong,
    has: (key: string) => values.has(key),
    text(key: string, emptyAllowed = false): string | undefined {
      const node = values.get(key);
      if (node === undefined) return undefined;
      const value = yaml().isScalar(node) ? node.value : undefined;
      if (typeof value !== 'string' || (!emptyAllowed && value.trim() === '')) {
        wrong(key, emptyAllowed ? 'a string' : 'a non-empty string');
        return undefined;
      }
      return value.trim();
    },
    list(key: string): string[] {
      const node = values.get(key);
      if (node === undefined || node === null) return [];
      const items = yaml().isSeq(node) ? node.items.map((i) => (yaml().isScalar(i) ? i.value : undefined)) : [undefined];
      if (!items.every((i): i is string => typeof i === 'string' && i.trim() !== '')) {
        wrong(key, 'a list of non-empty strings');
        return [];
      }
      return items.map((i) => i.trim());
    },
    introspection(): IntrospectionSettings | undefined {
      const node = values.get('introspection');
      if (node === undefined || node === null) return undefined;
      if (!yaml().isMap(node)) {
        wrong('introspection', 'a mapping of clientId, clientSecretFile, when (and endpoint)');
        return undefined;
      }
      const inner = fields(node, INTROSPECTION_KEYS, 'an introspection', at);
      const endpoint = inner.text('endpoint');
      if (endpoint !== undefined && !isHttpUrl(endpoint)) inner.wrong('endpoint', 'an absolute http(s) URL');
      const clientId = inner.text('clientId');
      const clientSecretFile = inner.text('clientSecretFile');
      const when = inner.text('when') ?? 'missing-claims';
      if (clientId === undefined) at(node, 'introspection: clientId is required');
      if (clientSecretFile === undefined) at(node, 'introspection: clientSecretFile is required (a file holding the secret)');
      if (!(WHEN as readonly string[]).includes(when)) inner.wrong('when', WHEN.join(' or '));
      if (clientId === undefined || clientSecretFile === undefined) return undefined;
      return { endpoint, clientId, clientSecretFile, when: when as IntrospectionWhen };
    },
    tokenExchange(): TokenExchangeSettings | null | undefined {
      if (!values.has('tokenExchange')) return undefined;
      const node = values.get('tokenExchange');
      if (!yaml().isMap(node)) {
        wrong('tokenExchange', 'a mapping of audience, clientId, clientSecretFile');
        return null;
      }
      const inner = fields(node, TOKEN_EXCHANGE_KEYS, 'a tokenExchange', at);
      const audience = inner.text('audience');
      const clientId = inner.text('clientId');
      const clientSecretFile = inner.text('clientSecretFile');
      for (const key of TOKEN_EXCHANGE_KEYS) {
        if (!inner.has(key)) at(node, `tokenExchange: ${key} is required (${TOKEN_EXCHANGE_MEANING[key]})`);
      }
      // Read now, so that a missing Secret mount is told with the rest of the configuration.
      const unreadable = clientSecretFile === undefined ? undefined : unreadableSecret(clientSecretFile);
      if (unreadable !== undefined) inner.wrong('clientSecretFile', `a readable file holding the client secret (${unreadable})`);
      if (audience === undefined || clientId === undefined || clientSecretFile === undefined || unreadable !== undefined) return null;
      return { audience, clientId, clientSecretFile };
    },
  };
}

const TOKEN_EXCHANGE_MEANING: Record<(typeof TOKEN_EXCHANGE_KEYS)[number], string> = {
  audience: "the upstream's client in this issuer",
  clientId: "the sidecar's client in this issuer, allowed to exchange tokens",
  clientSecretFile: "a file holding that client's secret",
};

/** Why a secret file cannot serve, or undefined when it can. */
function unreadableSecret(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim() === '' ? 'the file is empty' : undefined;
  } catch (error) {
    return `cannot read it: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`;
  }
}

/** ISSUERS_FILE: the path of the file, held as the issuers it lists (read at start-up). */
export function issuersFile(): Kind<readonly TrustedIssuer[]> {
  return {
    accepts: 'path of a YAML file',
    unset: () => [],
    parse(path, field) {
      let text: string;
      try {
        text = readFileSync(path, 'utf8');
      } catch (error) {
        return field.problem(`${field.name}=${show(path)}: cannot read the file: ${(error as Error).message}`);
      }
      // The issuers read stand even when some problems were found (the configuration is refused
      // anyway), so the checks between variables see them and report their problems at once.
      return parseIssuers(text, (line, column, message) => field.problem(`${field.name} ${path}:${line}:${column}: ${message}`));
    },
  };
}
