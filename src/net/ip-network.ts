// The one parser of IP addresses and networks (CIDRs) for everything that reads them from users — policies'
// ipBlocks, the sandbox's exclusion annotations and address ranges, the BPF exclusion table — so that one text
// means one network everywhere, and the words for what is wrong with it are the same.
import * as net from 'node:net';
import { formatIpv4, formatIpv6, ipv6ToBigInt, parseIpv4 } from './ip';

/**
 * An address. IPv4-mapped IPv6 (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2, how Node reports IPv4 peers on dual-stack
 * sockets) is IPv4, as the kernel treats it and as Ferry's connect6 program normalises it.
 */
export type IpAddress = { family: 4; value: number } | { family: 6; value: bigint };

interface NetworkFacts {
  /** In the network's own family: an IPv4-mapped network's length is the IPv4 one (the written one less 96). */
  prefixLength: number;
  /** The written address had bits set past the prefix; `base` has them cleared. */
  hostBits: boolean;
  /** Written as IPv4-mapped IPv6; the network is the IPv4 one it maps. */
  mapped: boolean;
  /** The text had `/length`; a bare address is a network of one address (/32 or /128). */
  prefixWritten: boolean;
}

/** A network: family, its address with the host bits cleared, and the prefix length. */
export type IpNetwork = (NetworkFacts & { family: 4; base: number }) | (NetworkFacts & { family: 6; base: bigint });

const ALL_ONES_128 = (1n << 128n) - 1n;

/** The netmask of an IPv4 prefix length (0..32) as an unsigned 32-bit number. */
export function ipv4Mask(prefixLength: number): number {
  // `<< 32` is `<< 0` in JavaScript, so /0 needs its own case.
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
}

/** The netmask of an IPv6 prefix length (0..128). */
export function ipv6Mask(prefixLength: number): bigint {
  return ALL_ONES_128 ^ ((1n << BigInt(128 - prefixLength)) - 1n);
}

type ParsedAddress = { address: IpAddress; mapped: boolean } | { problem: string };

function parseAddress(text: string, what: string): ParsedAddress {
  const percent = text.indexOf('%');
  if (percent >= 0) {
    // net.isIPv6 accepts a zone (`fe80::1%eth0`); it names a link for one host's sockets (RFC 4007 §11), and no
    // network and no peer address Ferry compares contains one.
    return net.isIPv6(text)
      ? { problem: `has an IPv6 zone index (${text.slice(percent)}); zone indexes are not allowed` }
      : { problem: `is not an IPv4 or IPv6 ${what}` };
  }
  const family = net.isIP(text);
  if (family === 4) return { address: { family: 4, value: parseIpv4(text) ?? 0 }, mapped: false };
  if (family !== 6) return { problem: `is not an IPv4 or IPv6 ${what}` };
  const value = ipv6ToBigInt(text);
  if (value >> 32n === 0xffffn) return { address: { family: 4, value: Number(value & 0xffffffffn) }, mapped: true };
  return { address: { family: 6, value }, mapped: false };
}

/** An address (not a network), IPv4-mapped IPv6 as IPv4; undefined when it is none or has a zone index. */
export function parseIp(text: string): IpAddress | undefined {
  const parsed = parseAddress(text, 'address');
  return 'problem' in parsed ? undefined : parsed.address;
}

/**
 * `ADDRESS/LENGTH` or a bare address, or why it is neither (a phrase to follow the quoted text: `has a prefix
 * length outside 0..32`). The rules, the same for every caller:
 * - like Go's netip.ParsePrefix (so Istio) and the kernel (`ip route add 10.0.0.1/8` installs 10.0.0.0/8), host
 *   bits past the prefix are accepted and cleared; `hostBits` says so, and callers warn with ipNetworkWarning;
 * - the prefix length is decimal without leading zeros, 0..32 for IPv4 and 0..128 for IPv6;
 * - IPv4-mapped IPv6 is IPv4. Its prefix length is written in IPv6 bits and must be 96..128, which is IPv4's
 *   0..32 (`::ffff:10.0.0.0/104` is 10.0.0.0/8); a shorter one would reach outside ::ffff:0:0/96, and no IPv6
 *   network Ferry matches ever contains a mapped address;
 * - zone indexes (`fe80::1%eth0`) are refused.
 * A bare address is the network of that one address; `prefixWritten` lets callers that want a CIDR insist.
 */
export function parseIpNetwork(text: string): IpNetwork | { problem: string } {
  const slash = text.indexOf('/');
  const parsed = parseAddress(slash < 0 ? text : text.slice(0, slash), 'address or CIDR');
  if ('problem' in parsed) return parsed;
  const { address, mapped } = parsed;
  const writtenBits = address.family === 4 && !mapped ? 32 : 128;
  const lowest = mapped ? 96 : 0;
  let writtenLength = writtenBits;
  if (slash >= 0) {
    const lengthText = text.slice(slash + 1);
    const range = `${lowest}..${writtenBits}${mapped ? ' (an IPv4-mapped address counts IPv6 bits: /96 is IPv4 /0)' : ''}`;
    if (!/^(0|[1-9][0-9]{0,2})$/.test(lengthText)) return { problem: `has a prefix length that is not a number in ${range}` };
    writtenLength = Number(lengthText);
    if (writtenLength < lowest || writtenLength > writtenBits) return { problem: `has a prefix length outside ${range}` };
  }
  const facts = { prefixLength: writtenLength - lowest, mapped, prefixWritten: slash >= 0 };
  if (address.family === 4) {
    const base = (address.value & ipv4Mask(facts.prefixLength)) >>> 0;
    return { family: 4, base, hostBits: base !== address.value, ...facts };
  }
  const base = address.value & ipv6Mask(facts.prefixLength);
  return { family: 6, base, hostBits: base !== address.value, ...facts };
}

/** A network as Ferry writes it: `10.0.0.0/8`, `fd00::/8` (RFC 5952), always with its prefix length. */
export function formatIpNetwork(network: IpNetwork): string {
  const address = network.family === 4 ? formatIpv4(network.base) : formatIpv6(network.base);
  return `${address}/${network.prefixLength}`;
}

/**
 * What a caller should warn about a network it accepted other than as written (a phrase to follow the quoted
 * text: `has host bits set; using 10.0.0.0/8`), or undefined when it is used as written.
 */
export function ipNetworkWarning(network: IpNetwork): string | undefined {
  const notes: string[] = [];
  if (network.hostBits) notes.push('has host bits set');
  if (network.mapped) notes.push('is IPv4-mapped IPv6, matched as IPv4');
  return notes.length === 0 ? undefined : `${notes.join(' and ')}; using ${formatIpNetwork(network)}`;
}

/** Whether `address` is inside `network` (families must agree: an IPv4-mapped address is IPv4). */
export function ipNetworkContains(network: IpNetwork, address: IpAddress): boolean {
  if (network.family === 4) return address.family === 4 && (address.value & ipv4Mask(network.prefixLength)) >>> 0 === network.base;
  return address.family === 6 && (address.value & ipv6Mask(network.prefixLength)) === network.base;
}
