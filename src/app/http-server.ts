// The agent's own small HTTP servers (admin, metrics, readiness): listen, and answer JSON or text.
import * as http from 'node:http';

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void | Promise<void>;

/** Every address of the node, IPv6 and IPv4: `::` dual-stack, or 0.0.0.0 where the namespace has no IPv6. */
export const ANY_ADDRESS = 'any';

/** A port to bind, or a listening socket this process received (a predecessor's, handed over): never re-bound. */
export type ListenAt = number | { fd: number };

/**
 * Listen on host:port (ANY_ADDRESS: every address of both families), or serve an fd already
 * listening; a handler that throws answers 500 with the message instead of dropping the request.
 */
export async function listenHttp(handler: Handler, port: ListenAt, host: string): Promise<http.Server> {
  if (typeof port !== 'number') return listenOn(handler, port);
  if (host !== ANY_ADDRESS) return listenOn(handler, port, host);
  try {
    // `::` without ipv6Only takes IPv4 too, as v4-mapped peers (ipv6(7), IPV6_V6ONLY off).
    return await listenOn(handler, port, '::');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EAFNOSUPPORT' && code !== 'EADDRNOTAVAIL') throw err;
    return listenOn(handler, port, '0.0.0.0');
  }
}

function listenOn(handler: Handler, ...where: [number, string] | [{ fd: number }]): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    Promise.resolve()
      .then(() => handler(req, res))
      .catch((err: Error) => {
        if (!res.headersSent) sendText(res, 500, `internal error: ${err.message}\n`);
        else res.destroy(err);
      });
  });
  // A scrape or an inspection that stalls must not hold a socket for ever.
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const listening = (): void => {
      server.off('error', reject);
      resolve(server);
    };
    if (where.length === 1) server.listen(where[0], listening);
    else server.listen(where[0], where[1], listening);
  });
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendText(res: http.ServerResponse, status: number, body: string, contentType = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
