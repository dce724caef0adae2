// Shared pieces of the k8s suite: kubectl calls that fail loudly, polling with a deadline, raw HTTPS to the
// apiserver with a bearer token, and the listening sockets of a process read from /proc.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as https from 'node:https';
import { parse } from 'yaml';
import type { DevCluster } from '../../src/devcluster';

/** kubectl that must succeed; its stdout. */
export async function kubectlOk(cluster: DevCluster, args: string[], input?: string): Promise<string> {
  const result = await cluster.kubectl(args, input);
  assert.equal(result.code, 0, `kubectl ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  return result.stdout;
}

export async function kubectlJson<T = Record<string, unknown>>(cluster: DevCluster, args: string[]): Promise<T> {
  return JSON.parse(await kubectlOk(cluster, [...args, '-o', 'json'])) as T;
}

/** Polls `check` until it returns a value other than undefined; fails naming `what` and the last state seen. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = 'not checked yet';
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
      last = 'not yet';
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) assert.fail(`${what}: not within ${timeoutMs} ms (last: ${last})`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** The cluster CA from the admin kubeconfig, to trust the apiserver without the admin's client certificate. */
export function clusterCa(cluster: DevCluster): Buffer {
  const config = parse(fs.readFileSync(cluster.kubeconfigPath, 'utf8')) as {
    clusters: Array<{ cluster: { 'certificate-authority-data': string } }>;
  };
  return Buffer.from(config.clusters[0].cluster['certificate-authority-data'], 'base64');
}

/** One HTTPS request authenticated only by `token` (no client certificate). */
export function requestWithToken(
  cluster: DevCluster,
  method: string,
  urlPath: string,
  token: string,
  body?: unknown,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const request = https.request(
      new URL(urlPath, cluster.server),
      {
        method,
        ca: clusterCa(cluster),
        headers: {
          authorization: `Bearer ${token}`,
          accept: 'application/json',
          ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
        },
        timeout: 10_000,
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        response.on('error', reject);
      },
    );
    request.on('timeout', () => request.destroy(new Error(`${method} ${urlPath}: no answer within 10 s`)));
    request.on('error', reject);
    request.end(payload);
  });
}

export interface Listener {
  protocol: 'tcp' | 'tcp6' | 'udp' | 'udp6';
  address: string;
  port: number;
}

/**
 * Every socket of `pid` that listens (TCP LISTEN) or is bound (UDP), from /proc/PID/fd (socket inodes) and
 * /proc/net/{tcp,tcp6,udp,udp6} (read as that process's network namespace sees them).
 */
export function listenersOf(pid: number): Listener[] {
  const inodes = new Set<string>();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (match) inodes.add(match[1]);
    } catch {
      // The descriptor closed between readdir and readlink.
    }
  }
  const found: Listener[] = [];
  for (const protocol of ['tcp', 'tcp6', 'udp', 'udp6'] as const) {
    const lines = fs.readFileSync(`/proc/${pid}/net/${protocol}`, 'utf8').trim().split('\n').slice(1);
    for (const line of lines) {
      const fields = line.trim().split(/\s+/);
      const [local, , state] = [fields[1], fields[2], fields[3]];
      const inode = fields[9];
      if (!inodes.has(inode)) continue;
      // 0A is TCP_LISTEN; an unconnected UDP socket shows 07 (TCP_CLOSE's number) in /proc/net/udp.
      const listening = protocol.startsWith('tcp') ? state === '0A' : state === '07';
      if (!listening) continue;
      const [hexAddress, hexPort] = local.split(':');
      found.push({ protocol, address: decodeProcAddress(hexAddress), port: Number.parseInt(hexPort, 16) });
    }
  }
  return found;
}

/** /proc/net addresses are 32-bit words in host (little-endian) byte order. */
function decodeProcAddress(hex: string): string {
  const words = hex.match(/.{8}/g) ?? [];
  const bytes = words.flatMap((word) => (word.match(/../g) ?? []).reverse().map((b) => Number.parseInt(b, 16)));
  if (bytes.length === 4) return bytes.join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16));
  return groups.join(':');
}

export function isLoopback(address: string): boolean {
  if (/^127\./.test(address)) return true;
  if (address === '0:0:0:0:0:0:0:1') return true;
  // IPv4-mapped loopback, ::ffff:127.x.y.z
  const mapped = /^0:0:0:0:0:ffff:([0-9a-f]+):([0-9a-f]+)$/.exec(address);
  return mapped !== null && Number.parseInt(mapped[1], 16) >> 8 === 127;
}
