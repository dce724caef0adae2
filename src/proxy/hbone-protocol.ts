// What both ends of an HBONE tunnel agree on: HTTP/2 flow-control settings, the CONNECT target
// form, and the `forwarded`, `traceparent` and `baggage` headers the client sends.
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { ProxyOptionsError } from './errors';
import type { ProxyPod, SocketAddress } from './types';

/** Streams per tunnel: the pool opens at most this many, and the server grants as many (ztunnel's pool uses 100). */
export const HBONE_MAX_STREAMS = 100;

/** What one tunnel may make its receiver hold for streams whose reader does not read. */
export const HBONE_TUNNEL_BUFFER_BYTES = 16 * 1024 * 1024;

/**
 * The stream window that keeps a tunnel's buffered bytes under `tunnelBufferBytes` with
 * `maxStreams` streams open. RFC 9113 §5.2 has both a stream and a connection window bound what a
 * peer may send unread, but Node consumes the connection window as DATA arrives
 * (node_http2.cc OnDataChunkReceived: nghttp2_session_consume_connection) and holds back only the
 * stream window until JavaScript reads: so the bound is streams × stream window, and the connection
 * window bounds nothing. Measured with 200 slow readers on 2 tunnels: 4 MiB stream windows let
 * the receiving agent hold ~500 MiB. The cost is throughput per stream: at most one window per
 * round trip (164 KiB per 0.1 ms between nodes of one rack is ~1.6 GB/s).
 */
export function streamWindowFor(tunnelBufferBytes: number, maxStreams = HBONE_MAX_STREAMS): number {
  return Math.max(65_535, Math.floor(tunnelBufferBytes / maxStreams));
}

/** HTTP/2 flow control for tunnels; see streamWindowFor for why the stream window is what bounds memory. */
export const HBONE_FLOW = {
  streamWindow: streamWindowFor(HBONE_TUNNEL_BUFFER_BYTES),
  connectionWindow: HBONE_TUNNEL_BUFFER_BYTES,
  /** Larger frames mean fewer frame headers and callbacks per MiB (RFC 9113 §4.2 SETTINGS_MAX_FRAME_SIZE). */
  maxFrameSize: 1024 * 1024,
} as const;

export function hostPort(ip: string, port: number): string {
  return net.isIPv6(ip) ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** `::ffff:10.0.0.1` (a v4 peer on a dual-stack socket) → `10.0.0.1`. */
export function stripMapped(ip: string): string {
  return ip.startsWith('::ffff:') && net.isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
}

/**
 * The CONNECT request's `:authority`, which for CONNECT is the target's host and port
 * (RFC 9113 §8.5, RFC 9110 §9.3.6): `ip:port`, `[v6]:port`. Undefined for anything else,
 * including host names: HBONE targets a pod address, never a name.
 */
export function parseAuthority(authority: string | undefined): SocketAddress | undefined {
  if (authority === undefined) return undefined;
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|(\d{1,3}(?:\.\d{1,3}){3})):(\d{1,5})$/.exec(authority);
  if (!match) return undefined;
  const ip = match[1] ?? match[2];
  const port = Number(match[3]);
  const family = net.isIPv6(ip) ? 6 : net.isIPv4(ip) ? 4 : 0;
  if (family === 0 || port < 1 || port > 65535) return undefined;
  if (family === 6 && net.isIPv4(stripMapped(ip))) return { family: 4, ip: stripMapped(ip), port };
  return { family, ip, port };
}

/** Whether `ip` is one of `ips`; IPv6 compared as addresses, not text ('2001:db8::1' = '2001:DB8:0::1'). */
export function hasIp(ips: readonly string[], ip: string): boolean {
  if (ips.includes(ip)) return true;
  if (!net.isIPv6(ip)) return false;
  const list = new net.BlockList();
  list.addAddress(ip, 'ipv6');
  return ips.some((candidate) => net.isIPv6(candidate) && list.check(candidate, 'ipv6'));
}

/** RFC 7239 §4: `for=192.0.2.60`, and a v6 address bracketed and quoted: `for="[2001:db8::1]"`. */
export function forwardedFor(ip: string): string {
  return net.isIPv6(ip) ? `for="[${ip}]"` : `for=${ip}`;
}

/**
 * A new W3C trace-context `traceparent` (version 00): random 16-byte trace-id and 8-byte
 * parent-id, neither all zeros (invalid per the spec), flags 00 — this proxy records no span, so it
 * makes no sampling decision for the tunnel.
 */
export function newTraceparent(): string {
  for (;;) {
    const bytes = randomBytes(24);
    const traceId = bytes.subarray(0, 16).toString('hex');
    const parentId = bytes.subarray(16).toString('hex');
    if (!/^0+$/.test(traceId) && !/^0+$/.test(parentId)) return `00-${traceId}-${parentId}-00`;
  }
}

/** A received `traceparent` if it is well formed (version 00 form), else undefined. */
export function validTraceparent(value: string | string[] | undefined): string | undefined {
  if (typeof value !== 'string') return undefined;
  const match = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(value.trim());
  if (!match || match[1] === 'ff' || /^0+$/.test(match[2]) || /^0+$/.test(match[3])) return undefined;
  return match[0];
}

/**
 * W3C baggage naming the source workload, as ztunnel sends it (OpenTelemetry k8s semantic
 * conventions); values percent-encoded as the baggage spec requires.
 */
export function sourceBaggage(pod: Pick<ProxyPod, 'namespace' | 'name'>): string {
  return `k8s.namespace.name=${encodeURIComponent(pod.namespace)},k8s.pod.name=${encodeURIComponent(pod.name)}`;
}

/** Merge `overrides` over `defaults`, checking each numeric field is an integer in [min, max]. */
export function numericOptions<T extends { [K in keyof T]: number }>(
  where: string,
  defaults: T,
  overrides: Partial<T> | undefined,
  ranges: { [K in keyof T]: [number, number] },
): T {
  const merged = { ...defaults, ...overrides };
  for (const field of Object.keys(defaults) as Array<keyof T & string>) {
    const value = merged[field];
    const [min, max] = ranges[field];
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new ProxyOptionsError(`${where}.${field}: expected an integer in [${min}, ${max}], got ${String(value)}`);
    }
  }
  return merged;
}
