import { show, type Kind } from './kinds.js';

/** REDIS_URL holding its password: logged (JSON) and printed with the password as "***". */
export class RedisUrl {
  readonly #href: string;
  constructor(href: string) {
    this.#href = href;
  }
  /** The URL as given, password included: only for connecting. */
  get href(): string {
    return this.#href;
  }
  toString(): string {
    const url = new URL(this.#href);
    if (url.password !== '') url.password = '***';
    return url.href;
  }
  toJSON(): string {
    return this.toString();
  }
}

/** redis:// or rediss:// with a host and at most a database number as path; never echoed. */
export function redisUrl(): Kind<RedisUrl | undefined> {
  return {
    accepts: '`redis://`, `rediss://` URL',
    secret: 'it may hold a password',
    unset: () => undefined,
    parse(value, field) {
      let url: URL | undefined;
      try {
        url = new URL(value);
      } catch {
        url = undefined;
      }
      if (url === undefined || (url.protocol !== 'redis:' && url.protocol !== 'rediss:') || url.hostname === '') {
        return field.expected('redis://[:password@]host:port[/db] or rediss://...');
      }
      if (url.pathname !== '' && url.pathname !== '/' && !/^\/\d+$/.test(url.pathname)) {
        return field.problem(`${field.name}: the path ${show(url.pathname)} is not a database number such as /0`);
      }
      return new RedisUrl(value);
    },
  };
}
