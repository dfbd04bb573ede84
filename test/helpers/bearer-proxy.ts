// A loopback forward proxy that adds `Authorization: Bearer TOKEN` to every request and passes
// everything else as it came (method, target, headers, Host included, body and response streamed
// both ways): for clients that cannot send a token, such as the MCP conformance CLI.

import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface BearerProxy {
  /** http://127.0.0.1:PORT */
  readonly url: string;
  close(): Promise<void>;
}

/** `port`: where to listen (0: any free port). */
export async function startBearerProxy(target: string, token: string, listenPort = 0): Promise<BearerProxy> {
  const { hostname, port: targetPort } = new URL(target);
  const server: Server = createServer((req: IncomingMessage, res) => {
    // rawHeaders keep their case and repetitions; only Authorization is ours.
    const headers: string[] = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      if (req.rawHeaders[i]!.toLowerCase() !== 'authorization') headers.push(req.rawHeaders[i]!, req.rawHeaders[i + 1]!);
    }
    headers.push('Authorization', `Bearer ${token}`);
    const upstream = request({ hostname, port: targetPort, method: req.method, path: req.url, headers, setHost: false }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.rawHeaders);
      res.flushHeaders();
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(listenPort, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
