// Address arithmetic shared by policy matching and the sandbox's manifests: IPv4 as an unsigned
// 32-bit number, IPv6 as a 128-bit bigint.
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
  const groups = tail === undefined
    ? headGroups
    : [...headGroups, ...new Array<string>(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups];
  return groups.reduce((acc, group) => (acc << 16n) | BigInt(parseInt(group, 16)), 0n);
}
