// An upstream HTTP server that records what reached it and answers what the test says.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  rawHeaders: string[];
  body: string;
}

export interface TestUpstream {
  readonly url: string;
  readonly seen: SeenRequest[];
  readonly server: Server;
  /** Replaces the default handler (JSON echo of the identity headers). */
  handle(handler: (req: IncomingMessage, res: ServerResponse, body: string) => void): void;
  close(): Promise<void>;
}

export async function startUpstream(port = 0): Promise<TestUpstream> {
  const seen: SeenRequest[] = [];
  let handler = (req: IncomingMessage, res: ServerResponse, _body: string): void => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ ok: true, user: req.headers['x-verified-user'] ?? null }));
  };
  const server = createServer((req, res) => {
    // Record at once (streams), then collect the body for the record.
    const record: SeenRequest = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      body: '',
    };
    seen.push(record);
    if (req.method === 'GET' || req.method === 'HEAD') {
      handler(req, res, '');
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      record.body = Buffer.concat(chunks).toString('utf8');
      handler(req, res, record.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    server,
    handle(next) {
      handler = next;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
