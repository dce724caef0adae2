// Address arithmetic shared by policy matching and the sandbox's manifests: IPv4 as an unsigned
// 32-bit number, IPv6 as a 128-bit bigint, and back to text.
import * as net from 'node:net';

/** IPv4 dotted quad → unsigned 32-bit number, or undefined when not an IPv4 address. */
export function parseIpv4(text: string): number | undefined {
  if (!net.isIPv4(text)) return undefined;
  return text.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
}

/** A valid IPv6 address (net.isIPv6, no zone index) → its 128 bits. */
export function ipv6ToBigInt(text: string): bigint {
  let address = text;
  // An embedded IPv4 tail (`::ffff:1.2.3.4`) stands for the last two 16-bit groups (RFC 4291 §2.2).
  const lastColon = address.lastIndexOf(':');
  const v4 = parseIpv4(address.slice(lastColon + 1));
  if (v4 !== undefined) {
    address = `${address.slice(0, lastColon + 1)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const [head = '', tail] = address.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups =
    tail === undefined
      ? headGroups
      : [...headGroups, ...new Array<string>(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups];
  return groups.reduce((acc, group) => (acc << 16n) | BigInt(parseInt(group, 16)), 0n);
}

/** Unsigned 32-bit number → dotted quad. */
export function formatIpv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff].join('.');
}

/**
 * 128 bits → the RFC 5952 canonical text of an IPv6 address: lowercase hex, no leading zeros in a group, and the
 * longest run of two or more zero groups (the first of equal runs) written `::`. This is the form the kernel and
 * Node print (inet_ntop), so addresses Ferry writes compare equal, as strings, to the ones sockets report.
 */
export function formatIpv6(value: bigint): string {
  if (value < 0n || value >> 128n !== 0n) throw new RangeError(`${value} is not a 128-bit value`);
  const groups = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (part: number[]): string => part.map((g) => g.toString(16)).join(':');
  // RFC 5952 §4.2.2: a single zero group is never shortened to `::`.
  if (bestLength < 2) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}
