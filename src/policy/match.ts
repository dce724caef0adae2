// The value matchers policies are made of: Istio string patterns ("*", "abc*", "*abc"), IP networks (parsed by
// src/net) and ports. Shared by validation (is this value usable?) and evaluation (does it match?).
import { ipNetworkContains, type IpAddress, type IpNetwork } from '../net';

/**
 * A predicate over parsed addresses, for a list of networks (ORed), parsed by src/net's parseIpNetwork like every
 * other address Ferry reads: an IPv4-mapped peer is IPv4, so it matches IPv4 blocks and never IPv6 ones (not even
 * ::/0), as the kernel and Ferry's connect6 program treat it.
 */
export function ipBlocksMatcher(blocks: readonly IpNetwork[]): (ip: IpAddress | undefined) => boolean {
  return (ip) => ip !== undefined && blocks.some((block) => ipNetworkContains(block, ip));
}

/** Why `pattern` is not an Istio string pattern, or undefined when it is one. */
export function stringPatternProblem(pattern: string): string | undefined {
  if (pattern === '') return 'is empty';
  const stars = pattern.split('*').length - 1;
  if (stars === 0 || pattern === '*') return undefined;
  if (stars > 1 || !(pattern.startsWith('*') || pattern.endsWith('*'))) {
    return 'has a \'*\' that is not alone, leading or trailing (Istio matches exact values, "*", "prefix*" and "*suffix")';
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
