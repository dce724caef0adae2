// HTTP GET from inside another network namespace: the socket is made there by the native addon (setns on a
// worker thread), then handed to node:http. How the CLI reaches agents and Prometheus without any route.
import * as http from 'node:http';
import * as net from 'node:net';
import * as native from '../native';
import { SOCKET_MARK } from '../config';
import { SandboxHttpError } from './runtime-errors';

/** Answers larger than this are refused rather than buffered (a PromQL query can return a lot). */
export const NETNS_HTTP_MAX_BODY_BYTES = 64 * 1024 * 1024;

export interface NetnsHttpResponse {
  status: number;
  body: string;
}

/**
 * GET http://host:port/path from inside the network namespace at netnsPath (e.g. /run/netns/NAME).
 * `timeoutMs` bounds the whole exchange: connect, request and the complete body. Resolves with any
 * HTTP status; rejects with SandboxHttpError when there is no answer (refused, timed out, reset,
 * body over NETNS_HTTP_MAX_BODY_BYTES). The socket carries the agent's mark, so no Ferry capture
 * program steers it whatever namespace it is made in. One connection per call (Connection: close).
 */
export async function netnsHttpGet(
  netnsPath: string,
  host: string,
  port: number,
  path: string,
  timeoutMs: number,
): Promise<NetnsHttpResponse> {
  const authority = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const where = `GET http://${authority}${path} in ${netnsPath}`;
  const deadline = Date.now() + timeoutMs;
  let fd: number;
  try {
    fd = await native.connectInNetns(netnsPath, { host, port, mark: SOCKET_MARK, timeoutMs: Math.max(1, Math.round(timeoutMs)) });
  } catch (err) {
    throw new SandboxHttpError(`${where}: ${(err as Error).message}`, { cause: err });
  }
  const socket = new net.Socket({ fd, readable: true, writable: true });
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (message: string, cause?: unknown): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      reject(new SandboxHttpError(`${where}: ${message}`, { cause }));
    };
    const req = http.request(
      {
        createConnection: () => socket,
        method: 'GET',
        path,
        headers: { host: authority, connection: 'close' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > NETNS_HTTP_MAX_BODY_BYTES) fail(`answer larger than ${NETNS_HTTP_MAX_BODY_BYTES} bytes`);
          else chunks.push(chunk);
        });
        res.on('end', () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', (err) => fail(err.message, err));
      },
    );
    const timer = setTimeout(() => fail(`no complete answer within ${timeoutMs} ms`), Math.max(0, deadline - Date.now()));
    req.on('error', (err) => fail(err.message, err));
    req.end();
  });
}

/**
 * Whether something listens on host:port, asked from inside the namespace at netnsPath. A pod asking its own
 * address goes over loopback, and the socket carries the agent's mark, so it is never steered or captured.
 */
export async function portOpen(netnsPath: string, host: string, port: number): Promise<boolean> {
  try {
    const fd = await native.connectInNetns(netnsPath, { host, port, mark: SOCKET_MARK, timeoutMs: 500 });
    native.closeFd(fd);
    return true;
  } catch {
    return false;
  }
}
