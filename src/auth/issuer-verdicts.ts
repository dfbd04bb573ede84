// Counts each verdict under the trusted issuer its token named (mcp_auth_issuer_verdicts_total),
// around the cached verification: a remembered verdict counts like a fresh one. The label takes
// only configured issuers: a token naming another is counted in mcp_auth_rejected_total alone.

import type { Counter } from 'prom-client';
import { Rejection } from '../lib/errors.js';
import type { Verdict, VerifyToResult } from './verify.js';

export function withIssuerVerdicts(
  verify: VerifyToResult,
  counter: Counter<'issuer' | 'verdict'>,
  issuers: readonly string[],
): VerifyToResult {
  // The accepted series bound once per issuer (prom-client still hashes the labels on each inc).
  const accepted = new Map(issuers.map((issuer) => [issuer, counter.labels({ issuer, verdict: 'accepted' })]));
  const count = (result: Verdict | Rejection): Verdict | Rejection => {
    if (result instanceof Rejection) {
      if (result.issuer !== undefined && accepted.has(result.issuer)) counter.inc({ issuer: result.issuer, verdict: result.reason });
    } else {
      const issuer = result.identity.issuer;
      if (issuer !== undefined) accepted.get(issuer)?.inc();
    }
    return result;
  };
  return (token) => {
    const result = verify(token);
    return result instanceof Promise ? result.then(count) : count(result);
  };
}
