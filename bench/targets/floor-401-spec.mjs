// The floor for a rejection that does what every rejection of the sidecar must do: Node's HTTP server, no
// Fastify, answering 401 with a request id, the reason-labelled counter, the request log line
// as the sidecar writes it, and for a request with a token its SHA-256 looked up among
// remembered answers and the verification histogram. Not a product: a measuring stick for how
// far below Node's fixed 401 (floor-401.mjs) the per-rejection work required alone puts any rejection.
// Imports the built sidecar (dist/), which bench:floor builds first.
import { hash, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { renderRejection } from '../../dist/auth/authenticate.js';
import { Rejection } from '../../dist/lib/errors.js';
import { createLogger, createRequestLogger } from '../../dist/observability/log.js';
import { createMetrics } from '../../dist/observability/metrics.js';

const logRequest = createRequestLogger(createLogger('info'));
const metrics = createMetrics();
const remembered = new Map();
// The sidecar's own answer for each reason, built once as the sidecar builds it.
const metadataUrl = 'http://127.0.0.1/.well-known/oauth-protected-resource';
const answers = {
  missing_token: renderRejection(new Rejection('missing_token'), metadataUrl),
  invalid_signature: renderRejection(new Rejection('invalid_signature'), metadataUrl),
};

createServer((req, res) => {
  const id = randomUUID();
  const startedAt = performance.now();
  let reason = 'missing_token';
  const authorization = req.headers.authorization;
  if (authorization !== undefined) {
    const stopTimer = metrics.verifyDuration.startTimer();
    const digest = hash('sha256', authorization.slice(7), 'binary');
    reason = remembered.get(digest) ?? 'invalid_signature';
    remembered.set(digest, reason);
    stopTimer();
  }
  metrics.rejected.inc({ reason });
  res.on('close', () => {
    logRequest({
      reqId: id,
      method: req.method,
      path: req.url,
      status: res.statusCode,
      durationMs: Math.round((performance.now() - startedAt) * 1000) / 1000,
      decision: 'reject',
      reason,
      user: undefined,
      subject: undefined,
      aborted: false,
    });
  });
  answers[reason].write(res, id);
}).listen(Number(process.env.PORT), '127.0.0.1');
