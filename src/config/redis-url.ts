// REDIS_URL: one Redis, a Sentinel group, or a Redis Cluster, read once into the pieces the
// client needs. The spellings are the ones most tools share:
//
//   redis[s]://[[user]:password@]host[:port][/db]
//   redis[s]+sentinel://[[user]:password@]host[:port][,host[:port]…]/master-name[/db]
//   redis[s]+cluster://[[user]:password@]host[:port][,host[:port]…]
//
// The user and password are the data nodes' (the Sentinels' own password is
// REDIS_SENTINEL_PASSWORD); `rediss` is TLS to every node, Sentinels included. A query string
// is refused rather than read: a client library that reads options from it could be told to
// queue commands or retry them, which the outage modes rule out.

import { show, type Field, type Invalid, type Kind } from './kinds.js';

export type RedisMode = 'single' | 'sentinel' | 'cluster';

export interface RedisNode {
  readonly host: string;
  readonly port: number;
}

const SCHEMES: Record<string, { mode: RedisMode; tls: boolean }> = {
  redis: { mode: 'single', tls: false },
  rediss: { mode: 'single', tls: true },
  'redis+sentinel': { mode: 'sentinel', tls: false },
  'rediss+sentinel': { mode: 'sentinel', tls: true },
  'redis+cluster': { mode: 'cluster', tls: false },
  'rediss+cluster': { mode: 'cluster', tls: true },
};
/** Spellings other tools use, told what to write instead. */
const ALIASES: Record<string, string> = {
  sentinel: 'redis+sentinel',
  'redis-sentinel': 'redis+sentinel',
  'rediss-sentinel': 'rediss+sentinel',
  'redis-cluster': 'redis+cluster',
  'rediss-cluster': 'rediss+cluster',
};
const DEFAULT_PORT: Record<RedisMode, number> = { single: 6379, sentinel: 26379, cluster: 6379 };
const FORMS =
  'redis://[:password@]host:port[/db], redis+sentinel://[:password@]host:26379[,host:26379…]/master-name[/db] or redis+cluster://[:password@]host:port[,host:port…] (rediss… for TLS)';

/** REDIS_URL as parsed: logged (JSON) and printed with the password as "***". */
export class RedisUrl {
  readonly #password: string | undefined;
  constructor(
    readonly scheme: string,
    readonly mode: RedisMode,
    readonly tls: boolean,
    readonly nodes: readonly RedisNode[],
    readonly username: string | undefined,
    password: string | undefined,
    readonly db: number,
    /** The Sentinel group's master name (sentinel only). */
    readonly masterName: string | undefined,
  ) {
    this.#password = password;
  }
  /** The data nodes' password: only for connecting. */
  get password(): string | undefined {
    return this.#password;
  }
  /** `host:port` of each node given (Sentinels, or Cluster seed nodes). */
  get addresses(): string[] {
    return this.nodes.map(address);
  }
  toString(): string {
    const user =
      this.username !== undefined || this.#password !== undefined
        ? `${encodeURIComponent(this.username ?? '')}${this.#password !== undefined ? ':***' : ''}@`
        : '';
    const path =
      this.mode === 'sentinel'
        ? `/${encodeURIComponent(this.masterName!)}${this.db !== 0 ? `/${this.db}` : ''}`
        : this.db !== 0
          ? `/${this.db}`
          : '';
    return `${this.scheme}://${user}${this.addresses.join(',')}${path}`;
  }
  toJSON(): string {
    return this.toString();
  }
}

export const address = (node: RedisNode): string => (node.host.includes(':') ? `[${node.host}]:${node.port}` : `${node.host}:${node.port}`);

/** One `host[:port]` of the list, through the WHATWG parser (IPv6 in brackets, IDNA, port range). */
function parseNode(text: string, defaultPort: number): RedisNode | undefined {
  if (text === '' || /[@/?#\\\s]/.test(text)) return undefined;
  let url: URL;
  try {
    url = new URL(`redis://${text}`);
  } catch {
    return undefined;
  }
  if (url.hostname === '') return undefined;
  return { host: url.hostname.replace(/^\[|\]$/g, '').toLowerCase(), port: url.port === '' ? defaultPort : Number(url.port) };
}

const decode = (text: string): string | undefined => {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
};

// Messages show no part of the value that could be a password's: not a host entry (a password
// with an unencoded "/" ends the authority early), and a path only when it cannot be one.
const showPath = (path: string) => (/^[\w./-]*$/.test(path) ? ` ${show(path)}` : '');

function parse(value: string, field: Field): RedisUrl | Invalid {
  const expected = (): Invalid => field.expected(FORMS);
  const problem = (message: string): Invalid => field.problem(`${field.name}: ${message}`);
  const match = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/is.exec(value);
  if (match === null) return expected();
  const scheme = match[1]!.toLowerCase();
  const rest = match[2]!;
  const kind = SCHEMES[scheme];
  if (kind === undefined) {
    const instead = ALIASES[scheme];
    return instead === undefined ? expected() : problem(`the scheme ${show(`${scheme}://`)} is spelled ${show(`${instead}://`)} here`);
  }
  // The authority ends at the first "/", "?" or "#", as in every URL parser; the userinfo at its last "@".
  const end = rest.search(/[/?#]/);
  const authority = end < 0 ? rest : rest.slice(0, end);
  const tail = end < 0 ? '' : rest.slice(end);
  if (/[?#]/.test(tail)) return problem('options after "?" (or a "#") are not read: give only the forms shown in the reference');
  const at = authority.lastIndexOf('@');
  const userinfo = at < 0 ? undefined : authority.slice(0, at);
  const hostList = at < 0 ? authority : authority.slice(at + 1);
  let username: string | undefined;
  let password: string | undefined;
  if (userinfo !== undefined) {
    const colon = userinfo.indexOf(':');
    username = decode(colon < 0 ? userinfo : userinfo.slice(0, colon));
    password = colon < 0 ? undefined : decode(userinfo.slice(colon + 1));
    if (username === undefined || (colon >= 0 && password === undefined))
      return problem('the user name or password is not valid percent-encoding (write "%40" for "@", "%25" for "%"; value not shown)');
    if (username === '') username = undefined;
  }
  const entries = hostList.split(',');
  const nodes: RedisNode[] = [];
  for (const [i, entry] of entries.entries()) {
    const node = parseNode(entry.trim(), DEFAULT_PORT[kind.mode]);
    if (node === undefined)
      return problem(
        `${entries.length > 1 ? `host ${i + 1} of ${entries.length}` : 'the host'} is not host[:port] (value not shown: it may hold a password)`,
      );
    nodes.push(node);
  }
  const segments = tail === '' || tail === '/' ? [] : tail.slice(1).split('/');
  let db = 0;
  let masterName: string | undefined;
  const dbOf = (segment: string | undefined) =>
    segment === undefined || segment === '' ? 0 : /^\d{1,2}$/.test(segment) ? Number(segment) : undefined;
  if (kind.mode === 'single') {
    if (nodes.length > 1)
      return problem(`${nodes.length} hosts for one Redis: a Sentinel group is redis+sentinel://…, a Cluster redis+cluster://…`);
    const found = segments.length <= 1 ? dbOf(segments[0]) : undefined;
    if (found === undefined) return problem(`the path${showPath(tail)} is not a database number such as /0`);
    db = found;
  } else if (kind.mode === 'sentinel') {
    masterName = segments[0] === undefined ? undefined : decode(segments[0]);
    if (masterName === undefined || masterName === '')
      return problem('a Sentinel URL names the master group after the hosts: redis+sentinel://host:26379,…/mymaster[/db]');
    const found = segments.length <= 2 ? dbOf(segments[1]) : undefined;
    if (found === undefined) return problem(`the path${showPath(tail)} is not /master-name or /master-name/db`);
    db = found;
  } else if (segments.length > 0 && !(segments.length === 1 && segments[0] === '0')) {
    return problem(`the path${showPath(tail)}: a Redis Cluster has only database 0`);
  }
  return new RedisUrl(scheme, kind.mode, kind.tls, nodes, username, password, db, masterName);
}

/** One Redis, a Sentinel group or a Cluster; never echoed. */
export function redisUrl(): Kind<RedisUrl | undefined> {
  return {
    accepts: '`redis://`, `rediss://`, `redis+sentinel://`, `redis+cluster://` URL',
    secret: 'it may hold a password',
    unset: () => undefined,
    parse,
  };
}
