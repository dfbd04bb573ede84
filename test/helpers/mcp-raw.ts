// A raw MCP client over HTTP for tests that must send what no SDK client sends (folded member
// names, duplicate ids, batches, foreign sessions): bodies as given, answers parsed from JSON or
// from an event stream.

import { request } from 'undici';

export interface RawAnswer {
  status: number;
  /** The sidecar's request id (X-Request-Id of the response): its audit lines carry it. */
  reqId: string;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** The JSON-RPC messages of the answer (a JSON body, or the data of each event). */
  messages: Record<string, unknown>[];
}

function messagesOf(contentType: string, text: string): Record<string, unknown>[] {
  const parse = (data: string): Record<string, unknown>[] => {
    try {
      const value = JSON.parse(data) as unknown;
      return (Array.isArray(value) ? value : [value]) as Record<string, unknown>[];
    } catch {
      return [];
    }
  };
  if (contentType.startsWith('text/event-stream')) {
    return text
      .split(/\r?\n\r?\n/)
      .map((event) =>
        event
          .split(/\r?\n/)
          .filter((line) => line.startsWith('data:'))
          .map((line) => line.slice(line.startsWith('data: ') ? 6 : 5))
          .join('\n'),
      )
      .filter((data) => data !== '')
      .flatMap(parse);
  }
  return contentType.includes('json') ? parse(text) : [];
}

export interface RawTarget {
  /** e.g. http://127.0.0.1:PORT/mcp */
  url: string;
  token: string;
  sessionId?: string;
  protocolVersion?: string;
}

/** POSTs a body as it is (string) or as JSON. */
export async function rawPost(
  target: RawTarget,
  body: string | object,
  headers: Record<string, string> = {},
  method = 'POST',
): Promise<RawAnswer> {
  const res = await request(target.url, {
    method: method as 'POST',
    headers: {
      authorization: `Bearer ${target.token}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...(target.sessionId === undefined ? {} : { 'mcp-session-id': target.sessionId }),
      ...(target.protocolVersion === undefined ? {} : { 'mcp-protocol-version': target.protocolVersion }),
      ...headers,
    },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    reqId: String(res.headers['x-request-id']),
    headers: res.headers,
    text,
    messages: messagesOf(String(res.headers['content-type'] ?? ''), text),
  };
}

/** initialize, notifications/initialized and tools/list (so the sidecar knows the tools' input schemas): a session ready for calls. */
export async function openSession(url: string, token: string, client = { name: 'raw-client', version: '1.0.0' }): Promise<RawTarget> {
  const target: RawTarget = { url, token };
  const init = await rawPost(target, {
    jsonrpc: '2.0',
    id: 0,
    method: 'initialize',
    params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: client },
  });
  if (init.status !== 200) throw new Error(`initialize: ${init.status} ${init.text}`);
  const sessionId = init.headers['mcp-session-id'];
  const result = init.messages[0]?.result as { protocolVersion?: string } | undefined;
  const session = { ...target, sessionId: typeof sessionId === 'string' ? sessionId : undefined, protocolVersion: result?.protocolVersion };
  await rawPost(session, { jsonrpc: '2.0', method: 'notifications/initialized' });
  const list = await rawPost(session, { jsonrpc: '2.0', id: 'list', method: 'tools/list' });
  if (list.status !== 200) throw new Error(`tools/list: ${list.status} ${list.text}`);
  return session;
}
