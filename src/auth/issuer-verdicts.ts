// Counts each verdict under the trusted issuer its token named (mcp_auth_issuer_verdicts_total),
// around the cached verification: a remembered verdict counts like a fresh one. The label takes
// only configured issuers: a token naming another is counted in mcp_auth_rejected_total alone.

import type { Counter } from 'prom-client';
import { Rejection } from '../lib/errors.js';
import type { Verdict, Verify } from './verify.js';

export function withIssuerVerdicts(verify: Verify, counter: Counter<'issuer' | 'verdict'>, issuers: readonly string[]): Verify {
  // The accepted series looked up once per issuer: no label hashing on the cached path.
  const accepted = new Map(issuers.map((issuer) => [issuer, counter.labels({ issuer, verdict: 'accepted' })]));
  const count = (verdict: Verdict): Verdict => {
    const issuer = verdict.identity.issuer;
    if (issuer !== undefined) accepted.get(issuer)?.inc();
    return verdict;
  };
  const countRejection = (error: unknown): unknown => {
    if (error instanceof Rejection && error.issuer !== undefined && accepted.has(error.issuer)) {
      counter.inc({ issuer: error.issuer, verdict: error.reason });
    }
    return error;
  };
  return (token) => {
    let result;
    try {
      result = verify(token);
    } catch (error) {
      throw countRejection(error);
    }
    return result instanceof Promise ? result.then(count, (error: unknown) => Promise.reject(countRejection(error))) : count(result);
  };
}
