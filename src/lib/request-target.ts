// The path of a request target, without its query string: what log lines and path checks read
// (a query may carry anything a client chooses, tokens included).

export function pathOf(url: string): string {
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}
