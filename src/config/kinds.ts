// The kinds of value a configuration variable holds: how its text is parsed and what a bad value
// is told. A kind reports problems through its Field and returns INVALID; the loader collects
// every problem before it gives up, so one bad variable never hides another.

/** Returned by a kind that found its text unusable (the problem is already reported). */
export const INVALID: unique symbol = Symbol('invalid');
export type Invalid = typeof INVALID;

/** The variable being parsed, and the way to report what is wrong with it. */
export interface Field {
  readonly name: string;
  readonly text: string;
  /** Reports `NAME="text": expected <what>` (a secret kind: the value is not shown). */
  expected(what: string): Invalid;
  /** Reports a message of its own; it must name the variable. */
  problem(message: string): Invalid;
}

export interface Kind<T> {
  /** The value, or INVALID; a kind may instead return what it could read despite the problems it reported, for the checks between variables (the configuration is refused all the same). */
  parse(text: string, field: Field): T | Invalid;
  /** The value of an unset variable whose row has no default; a kind without it needs one. */
  readonly unset?: () => T;
  /** What the kind accepts, for the reference (markdown). */
  readonly accepts: string;
  /** Set when the text may hold a secret: messages name the variable but never show the value. */
  readonly secret?: string;
}

export const show = (text: string): string => JSON.stringify(text);

/** A value never shown: logged, printed and inspected as "***"; `reveal()` only where it is used. */
export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  reveal(): string {
    return this.#value;
  }
  toString(): string {
    return '***';
  }
  toJSON(): string {
    return '***';
  }
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return '***';
  }
}

/** Text that is a password or the like (`why` says so in messages); unset: undefined. */
export function secret(why: string): Kind<Secret | undefined> {
  return { accepts: 'text (secret)', secret: why, unset: () => undefined, parse: (value) => new Secret(value) };
}

export function text(): Kind<string> {
  return { accepts: 'text', parse: (value) => value };
}

/** The same kind, unset allowed: the value is then undefined. */
export function optional<T>(kind: Kind<T>): Kind<T | undefined> {
  return { ...kind, unset: () => undefined };
}

export function integer(min: number, max: number): Kind<number> {
  return {
    accepts: `${min} to ${max}`,
    parse(value, field) {
      if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
        return field.expected(`a whole number from ${min} to ${max}`);
      }
      return Number(value);
    },
  };
}

export function boolean(): Kind<boolean> {
  return {
    accepts: '`true`, `false`',
    parse: (value, field) => (/^(true|false)$/i.test(value) ? value.toLowerCase() === 'true' : field.expected('true or false')),
  };
}

/** One of a few words, in any case. `expected` replaces the usual "one of a, b" in messages. */
export function choice<const T extends string>(allowed: readonly T[], expected = `one of ${allowed.join(', ')}`): Kind<T> {
  return {
    accepts: allowed.map((a) => `\`${a}\``).join(', '),
    parse(value, field) {
      const lower = value.toLowerCase();
      return (allowed as readonly string[]).includes(lower) ? (lower as T) : field.expected(expected);
    },
  };
}

/** A comma list; blanks between commas are dropped. `entry` checks each element. */
export function list(entry?: { valid: (item: string) => boolean; expected: string }): Kind<readonly string[]> {
  return {
    accepts: 'comma list',
    unset: () => [],
    parse(value, field) {
      const items = splitList(value);
      const bad = entry === undefined ? [] : items.filter((item) => !entry.valid(item));
      for (const item of bad) field.problem(`${field.name} entry ${show(item)}: expected ${entry!.expected}`);
      return bad.length > 0 ? INVALID : items;
    },
  };
}

export const splitList = (value: string): string[] =>
  value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');

interface UrlOptions {
  /** The config holds the URL's origin rather than the text. */
  origin?: boolean;
  /** A further rule: returns what is expected when the URL breaks it. */
  check?: (url: URL) => string | undefined;
}

/** An absolute http(s) URL without fragment or credentials. */
export function httpUrl(options: UrlOptions = {}): Kind<string> {
  return {
    accepts: 'http(s) URL',
    parse(value, field) {
      let url: URL;
      try {
        url = new URL(value);
      } catch {
        return field.expected('an absolute http(s) URL');
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') return field.expected('an http:// or https:// URL');
      if (url.hash !== '' || url.username !== '' || url.password !== '') {
        return field.expected('a URL without fragment or credentials');
      }
      const broken = options.check?.(url);
      if (broken !== undefined) return field.expected(broken);
      return options.origin === true ? url.origin : value;
    },
  };
}
