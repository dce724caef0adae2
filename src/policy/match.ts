// The value matchers policies are made of: Istio string patterns ("*", "abc*", "*abc"), IP addresses and CIDRs,
// and ports. Shared by validation (is this value usable?) and evaluation (does it match?).
import * as net from 'node:net';
import { ipv6ToBigInt, parseIpv4 } from '../net';

/** A parsed address; IPv4-mapped IPv6 (`::ffff:a.b.c.d`, as Node reports peers on dual-stack sockets) is IPv4. */
export type IpAddress = { family: 4; value: number } | { family: 6; value: bigint };

export function parseIp(text: string): IpAddress | undefined {
  const family = net.isIP(text);
  if (family === 4) return { family: 4, value: parseIpv4(text) ?? 0 };
  if (family !== 6 || text.includes('%')) return undefined;
  const value = ipv6ToBigInt(text);
  // ::ffff:0:0/96 is IPv4-mapped (RFC 4291 §2.5.5.2): match it against IPv4 blocks, like the kernel treats it.
  if (value >> 32n === 0xffffn) return { family: 4, value: Number(value & 0xffffffffn) };
  return { family: 6, value };
}

/** A network: `family`, the masked base and the prefix length. */
export interface IpBlock {
  family: 4 | 6;
  base: number | bigint;
  prefixLength: number;
}

/**
 * An Istio ipBlocks entry: an address (a /32 or /128) or a CIDR. Like Istio (Go's netip.ParsePrefix) a CIDR may
 * have host bits set; they are masked off, and `hostBits` says so, so that validation can warn.
 */
export function parseIpBlock(text: string): { block: IpBlock; hostBits: boolean } | { problem: string } {
  const slash = text.indexOf('/');
  const addressText = slash < 0 ? text : text.slice(0, slash);
  const address = parseIp(addressText);
  if (address === undefined) return { problem: 'is not an IPv4 or IPv6 address or CIDR (zone indexes such as %eth0 are not allowed)' };
  // Its prefix length would count IPv6 bits; the plain IPv4 form says the same without that trap.
  if (address.family === 4 && !net.isIPv4(addressText)) return { problem: 'is an IPv4-mapped IPv6 address; write it in IPv4 form' };
  const bits = address.family === 4 ? 32 : 128;
  let prefixLength = bits;
  if (slash >= 0) {
    const lengthText = text.slice(slash + 1);
    if (!/^[0-9]{1,3}$/.test(lengthText) || Number(lengthText) > bits) return { problem: `has a prefix length outside 0..${bits}` };
    prefixLength = Number(lengthText);
  }
  if (address.family === 4) {
    const mask = prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
    const base = (address.value & mask) >>> 0;
    return { block: { family: 4, base, prefixLength }, hostBits: base !== address.value };
  }
  const mask = prefixLength === 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - prefixLength)) - 1n);
  const base = address.value & mask;
  return { block: { family: 6, base, prefixLength }, hostBits: base !== address.value };
}

/** A predicate over parsed addresses, for a list of blocks (ORed). */
export function ipBlocksMatcher(blocks: readonly IpBlock[]): (ip: IpAddress | undefined) => boolean {
  const v4 = blocks.filter((b) => b.family === 4).map((b) => ({
    base: b.base as number,
    mask: b.prefixLength === 0 ? 0 : (0xffffffff << (32 - b.prefixLength)) >>> 0,
  }));
  const v6 = blocks.filter((b) => b.family === 6).map((b) => ({
    base: b.base as bigint,
    mask: b.prefixLength === 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - b.prefixLength)) - 1n),
  }));
  return (ip) => {
    if (ip === undefined) return false;
    if (ip.family === 4) {
      for (const b of v4) if (((ip.value & b.mask) >>> 0) === b.base) return true;
      return false;
    }
    for (const b of v6) if ((ip.value & b.mask) === b.base) return true;
    return false;
  };
}

/** Why `pattern` is not an Istio string pattern, or undefined when it is one. */
export function stringPatternProblem(pattern: string): string | undefined {
  if (pattern === '') return 'is empty';
  const stars = pattern.split('*').length - 1;
  if (stars === 0 || pattern === '*') return undefined;
  if (stars > 1 || !(pattern.startsWith('*') || pattern.endsWith('*'))) {
    return "has a '*' that is not alone, leading or trailing (Istio matches exact values, \"*\", \"prefix*\" and \"*suffix\")";
  }
  return undefined;
}

/**
 * A predicate over an optional string, for a list of Istio patterns (ORed): "*" means "present and not empty",
 * "abc*" a prefix, "*abc" a suffix, anything else the exact value. An absent value matches no pattern — as in
 * ztunnel (rbac.rs), where a plaintext peer has the empty identity, which even "*" does not match.
 */
export function stringMatcher(patterns: readonly string[]): (value: string | undefined) => boolean {
  const exact = new Set<string>();
  const prefixes: string[] = [];
  const suffixes: string[] = [];
  let presence = false;
  for (const p of patterns) {
    if (p === '*') presence = true;
    else if (p.endsWith('*')) prefixes.push(p.slice(0, -1));
    else if (p.startsWith('*')) suffixes.push(p.slice(1));
    else exact.add(p);
  }
  return (value) => {
    if (value === undefined || value === '') return false;
    if (presence || exact.has(value)) return true;
    for (const p of prefixes) if (value.startsWith(p)) return true;
    for (const s of suffixes) if (value.endsWith(s)) return true;
    return false;
  };
}

/** A port given as Istio does (a string of digits) or as a number; undefined when it is not 1..65535. */
export function parsePort(value: unknown): number | undefined {
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^[0-9]{1,5}$/.test(value) ? Number(value) : NaN;
  return Number.isInteger(n) && n >= 1 && n <= 65535 ? n : undefined;
}
