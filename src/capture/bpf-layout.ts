// Byte layouts of the BPF maps' keys and values, mirroring bpf/include/ferry-shared.h, with
// encoders and decoders. test/bpf/shared-constants.test.ts checks every size and offset here
// against the C header compiled on this machine.
import * as net from 'node:net';
import * as os from 'node:os';
import { formatIpv4, formatIpv6, ipv6ToBigInt, parseIpNetwork, parseIpv4 } from '../net';

export const AF_INET = 2;
export const AF_INET6 = 10;

export const BPF_CONSTANTS = {
  FERRY_SOCKET_MARK: 0xfe44,
  FERRY_DELIVERY_MARK: 0xfe45,
  FERRY_MAX_PODS: 1024,
  FERRY_MAX_POD_IPS: 2048,
  FERRY_MAX_TRACKED_SOCKETS: 65536,
  FERRY_MAX_SERVICES: 4096,
  FERRY_MAX_BACKENDS: 65536,
  FERRY_MAX_DELIVERIES: 65536,
  FERRY_MAX_EXCLUDED_PORTS: 8,
  FERRY_MAX_EXCLUDED_CIDRS: 4,
  FERRY_POD_ENROLLED: 0x1,
  FERRY_POD_LOCKED: 0x2,
  FERRY_CONFIG_SERVICE_LB: 0x1,
  FERRY_AF_INET: AF_INET,
  FERRY_AF_INET6: AF_INET6,
  FERRY_PORT_ADMIN: 15000,
  FERRY_PORT_OUTBOUND: 15001,
  FERRY_PORT_INBOUND: 15006,
  FERRY_PORT_HBONE: 15008,
  FERRY_PORT_METRICS: 15020,
  FERRY_PORT_READINESS: 15021,
  FERRY_PORT_DNS: 15053,
  FERRY_VERDICT_CONNECT_CAPTURED: 0,
  FERRY_VERDICT_CONNECT_LOCKED: 1,
  FERRY_VERDICT_CONNECT_AGENT: 2,
  FERRY_VERDICT_CONNECT_FOREIGN_MARK: 3,
  FERRY_VERDICT_CONNECT_SERVICE_LB: 4,
  FERRY_VERDICT_CONNECT_ORIGIN_LOST: 5,
  FERRY_VERDICT_SK_LOOKUP_STEERED: 6,
  FERRY_VERDICT_SK_LOOKUP_REFUSED: 7,
  FERRY_VERDICT_SK_LOOKUP_DELIVERY: 8,
  FERRY_VERDICT_SOCK_OPS_ORIGIN: 9,
  FERRY_VERDICT_SOCK_OPS_DELIVERY: 10,
  FERRY_VERDICT_SOCK_OPS_FILE_FAILED: 11,
  FERRY_VERDICT_COUNT: 12,
} as const;

/**
 * The programs' verdict counters (ferry_verdicts), by index: which program counts it and the
 * `verdict` label ferry_bpf_verdicts_total gives it. The test over the C header checks each index.
 */
export const VERDICTS: ReadonlyArray<{ index: number; program: 'connect' | 'sk_lookup' | 'sock_ops'; verdict: string }> = [
  { index: BPF_CONSTANTS.FERRY_VERDICT_CONNECT_CAPTURED, program: 'connect', verdict: 'captured' },
  { index: BPF_CONSTANTS.FERRY_VERDICT_CONNECT_LOCKED, program: 'connect', verdict: 'refused_enrolment_incomplete' },
  { index: BPF_CONSTANTS.FERRY_VERDICT_CONNECT_AGENT, program: 'connect', verdict: 'agent_socket' },
  { index: BPF_CONSTANTS.FERRY_VERDICT_CONNECT_FOREIGN_MARK, program: 'connect', verdict: 'foreign_mark' },
  { index: BPF_CONSTANTS.FERRY_VERDICT_CONNECT_SERVICE_LB, program: 'connect', verdict: 'service_translated' },
  { index: BPF_CONSTANTS.FERRY_VERDICT_CONNECT_ORIGIN_LOST, program: 'connect', verdict: 'origin_not_recorded' },
  { index: BPF_CONSTANTS.FERRY_VERDICT_SK_LOOKUP_STEERED, program: 'sk_lookup', verdict: 'steered' },
  { index: BPF_CONSTANTS.FERRY_VERDICT_SK_LOOKUP_REFUSED, program: 'sk_lookup', verdict: 'refused_no_listener' },
  { index: BPF_CONSTANTS.FERRY_VERDICT_SK_LOOKUP_DELIVERY, program: 'sk_lookup', verdict: 'agent_delivery' },
  { index: BPF_CONSTANTS.FERRY_VERDICT_SOCK_OPS_ORIGIN, program: 'sock_ops', verdict: 'origin_filed' },
  { index: BPF_CONSTANTS.FERRY_VERDICT_SOCK_OPS_DELIVERY, program: 'sock_ops', verdict: 'delivery_filed' },
  { index: BPF_CONSTANTS.FERRY_VERDICT_SOCK_OPS_FILE_FAILED, program: 'sock_ops', verdict: 'file_failed' },
];

/** sizeof and offsetof for every shared struct; field offsets in bytes. */
export const LAYOUT = {
  ferry_ip: { size: 20, fields: { family: 0, addr: 4 } },
  ferry_sockaddr: { size: 24, fields: { family: 0, port_be: 4, pad: 6, addr: 8 } },
  ferry_cidr: { size: 24, fields: { family: 0, prefix_len: 4, addr: 8 } },
  ferry_pod: { size: 120, fields: { flags: 0, pod_id: 4, excluded_ports: 8, excluded_cidrs: 24 } },
  ferry_conn_key: { size: 16, fields: { netns_cookie: 0, family: 8, local_port: 12 } },
  ferry_origin: { size: 32, fields: { dst: 0, socket_cookie: 24 } },
  ferry_service_key: { size: 24, fields: { vip: 0, port: 20 } },
  ferry_service: { size: 8, fields: { service_id: 0, backend_count: 4 } },
  ferry_backend_key: { size: 8, fields: { service_id: 0, index: 4 } },
  ferry_config: { size: 24, fields: { flags: 0, pad: 4, agent_cgroup_id: 8, peer_cgroup_id: 16 } },
  ferry_delivery_key: { size: 40, fields: { family: 0, local_port: 4, remote_port: 6, local: 8, remote: 24 } },
} as const;

/** Map names, as declared in bpf/include/maps.h (and so the names of their pins). */
export const MAP_NAMES = {
  pods: 'ferry_pods',
  origDst: 'ferry_orig_dst',
  connOrigin: 'ferry_conn_origin',
  inbound: 'ferry_inbound',
  podIps: 'ferry_pod_ips',
  services: 'ferry_services',
  backends: 'ferry_backends',
  config: 'ferry_config',
  deliveries: 'ferry_deliveries',
  verdicts: 'ferry_verdicts',
} as const;

/** Kernel structs use host byte order; the programs run on the same machine as the agent. */
const LITTLE = os.endianness() === 'LE';

function writeU32(buf: Buffer, value: number, offset: number): void {
  if (LITTLE) buf.writeUInt32LE(value >>> 0, offset);
  else buf.writeUInt32BE(value >>> 0, offset);
}
function readU32(buf: Buffer, offset: number): number {
  return LITTLE ? buf.readUInt32LE(offset) : buf.readUInt32BE(offset);
}
function writeU16(buf: Buffer, value: number, offset: number): void {
  if (LITTLE) buf.writeUInt16LE(value, offset);
  else buf.writeUInt16BE(value, offset);
}
function writeU64(buf: Buffer, value: bigint, offset: number): void {
  if (LITTLE) buf.writeBigUInt64LE(value, offset);
  else buf.writeBigUInt64BE(value, offset);
}
function readU64(buf: Buffer, offset: number): bigint {
  return LITTLE ? buf.readBigUInt64LE(offset) : buf.readBigUInt64BE(offset);
}

/** The 16 address bytes of a ferry_ip / ferry_sockaddr / ferry_cidr: network order, IPv4 in the first four. */
function addressBuffer(family: 4 | 6, value: number | bigint): Buffer {
  const bytes = Buffer.alloc(16);
  if (family === 4) bytes.writeUInt32BE(Number(value), 0);
  else {
    bytes.writeBigUInt64BE(BigInt(value) >> 64n, 0);
    bytes.writeBigUInt64BE(BigInt(value) & 0xffffffffffffffffn, 8);
  }
  return bytes;
}

/**
 * An address's family and its 16 bytes in network order (IPv4 in the first four). As written: an IPv4-mapped
 * address stays AF_INET6 `::ffff:a.b.c.d`, which is what a socket of that family holds.
 */
export function addressBytes(ip: string): { family: number; bytes: Buffer } {
  const v4 = parseIpv4(ip);
  if (v4 !== undefined) return { family: AF_INET, bytes: addressBuffer(4, v4) };
  // net.isIPv6 accepts a zone index (`fe80::1%eth0`), which has no place in these 16 bytes.
  if (net.isIPv6(ip) && !ip.includes('%')) return { family: AF_INET6, bytes: addressBuffer(6, ipv6ToBigInt(ip)) };
  throw new TypeError(`"${ip}" is not an IPv4 or IPv6 address`);
}

export function addressText(family: number, bytes: Buffer): string {
  if (family === AF_INET) return formatIpv4(bytes.readUInt32BE(0));
  // RFC 5952 §5: mapped addresses in the dotted form, as Node prints them (socket.remoteAddress).
  if (bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
    return `::ffff:${formatIpv4(bytes.readUInt32BE(12))}`;
  }
  return formatIpv6((bytes.readBigUInt64BE(0) << 64n) | bytes.readBigUInt64BE(8));
}

export function encodeIpKey(ip: string): Buffer {
  const { family, bytes } = addressBytes(ip);
  const buf = Buffer.alloc(LAYOUT.ferry_ip.size);
  writeU32(buf, family, LAYOUT.ferry_ip.fields.family);
  bytes.copy(buf, LAYOUT.ferry_ip.fields.addr);
  return buf;
}

export interface SocketAddress {
  family: 4 | 6;
  ip: string;
  port: number;
}

export function encodeSockaddr(address: SocketAddress, buf = Buffer.alloc(LAYOUT.ferry_sockaddr.size), at = 0): Buffer {
  const { family, bytes } = addressBytes(address.ip);
  const f = LAYOUT.ferry_sockaddr.fields;
  writeU32(buf, family, at + f.family);
  buf.writeUInt16BE(address.port, at + f.port_be);
  bytes.copy(buf, at + f.addr);
  return buf;
}

export function decodeSockaddr(buf: Buffer, at = 0): SocketAddress {
  const f = LAYOUT.ferry_sockaddr.fields;
  const family = readU32(buf, at + f.family);
  const ip = addressText(family, buf.subarray(at + f.addr, at + f.addr + 16));
  return { family: family === AF_INET ? 4 : 6, ip, port: buf.readUInt16BE(at + f.port_be) };
}

export interface PodEntry {
  podId: number;
  /** enrolled: captured; locked: enrolment incomplete, connects that would be captured are refused. */
  state: 'enrolled' | 'locked';
  excludedPorts: number[];
  excludedCidrs: string[];
}

export function encodePod(pod: PodEntry): Buffer {
  const f = LAYOUT.ferry_pod.fields;
  const buf = Buffer.alloc(LAYOUT.ferry_pod.size);
  if (pod.excludedPorts.length > BPF_CONSTANTS.FERRY_MAX_EXCLUDED_PORTS) {
    throw new RangeError(`at most ${BPF_CONSTANTS.FERRY_MAX_EXCLUDED_PORTS} excluded ports, got ${pod.excludedPorts.length}`);
  }
  if (pod.excludedCidrs.length > BPF_CONSTANTS.FERRY_MAX_EXCLUDED_CIDRS) {
    throw new RangeError(`at most ${BPF_CONSTANTS.FERRY_MAX_EXCLUDED_CIDRS} excluded CIDRs, got ${pod.excludedCidrs.length}`);
  }
  writeU32(buf, pod.state === 'enrolled' ? BPF_CONSTANTS.FERRY_POD_ENROLLED : BPF_CONSTANTS.FERRY_POD_LOCKED, f.flags);
  writeU32(buf, pod.podId, f.pod_id);
  pod.excludedPorts.forEach((port, i) => {
    writeU16(buf, port, f.excluded_ports + 2 * i);
  });
  pod.excludedCidrs.forEach((cidr, i) => {
    // The same parser as the manifest's annotation check. A mapped network is written as the IPv4 one, because
    // connect6 hands v4-mapped destinations to the exclusion check as AF_INET (bpf/connect.bpf.c).
    const network = parseIpNetwork(cidr);
    if ('problem' in network || !network.prefixWritten) {
      // A bare address or a bad length must never become /0, which would exempt all of the pod's traffic (fail open).
      const problem = 'problem' in network ? network.problem : 'has no prefix length';
      throw new TypeError(`excluded CIDR "${cidr}" ${problem}; expected ADDRESS/PREFIX`);
    }
    const at = f.excluded_cidrs + i * LAYOUT.ferry_cidr.size;
    writeU32(buf, network.family === 4 ? AF_INET : AF_INET6, at + LAYOUT.ferry_cidr.fields.family);
    writeU32(buf, network.prefixLength, at + LAYOUT.ferry_cidr.fields.prefix_len);
    addressBuffer(network.family, network.base).copy(buf, at + LAYOUT.ferry_cidr.fields.addr);
  });
  return buf;
}

export function encodeNetnsCookie(cookie: bigint): Buffer {
  const buf = Buffer.alloc(8);
  writeU64(buf, cookie, 0);
  return buf;
}

export function decodeNetnsCookie(buf: Buffer): bigint {
  return readU64(buf, 0);
}

export function encodeConnKey(netnsCookie: bigint, family: 4 | 6, localPort: number): Buffer {
  const f = LAYOUT.ferry_conn_key.fields;
  const buf = Buffer.alloc(LAYOUT.ferry_conn_key.size);
  writeU64(buf, netnsCookie, f.netns_cookie);
  writeU32(buf, family === 4 ? AF_INET : AF_INET6, f.family);
  writeU32(buf, localPort, f.local_port);
  return buf;
}

export interface Origin {
  destination: SocketAddress;
  socketCookie: bigint;
}

export function decodeOrigin(buf: Buffer): Origin {
  const f = LAYOUT.ferry_origin.fields;
  return { destination: decodeSockaddr(buf, f.dst), socketCookie: readU64(buf, f.socket_cookie) };
}

export function encodeServiceKey(vip: string, port: number): Buffer {
  const buf = Buffer.alloc(LAYOUT.ferry_service_key.size);
  encodeIpKey(vip).copy(buf, LAYOUT.ferry_service_key.fields.vip);
  writeU32(buf, port, LAYOUT.ferry_service_key.fields.port);
  return buf;
}

export function encodeService(serviceId: number, backendCount: number): Buffer {
  const buf = Buffer.alloc(LAYOUT.ferry_service.size);
  writeU32(buf, serviceId, LAYOUT.ferry_service.fields.service_id);
  writeU32(buf, backendCount, LAYOUT.ferry_service.fields.backend_count);
  return buf;
}

export function decodeService(buf: Buffer): { serviceId: number; backendCount: number } {
  return {
    serviceId: readU32(buf, LAYOUT.ferry_service.fields.service_id),
    backendCount: readU32(buf, LAYOUT.ferry_service.fields.backend_count),
  };
}

export function encodeBackendKey(serviceId: number, index: number): Buffer {
  const buf = Buffer.alloc(LAYOUT.ferry_backend_key.size);
  writeU32(buf, serviceId, LAYOUT.ferry_backend_key.fields.service_id);
  writeU32(buf, index, LAYOUT.ferry_backend_key.fields.index);
  return buf;
}

/** `peerCgroupId`: during a hand-over, the other agent's cgroup, whose marked sockets pass too (0n: none). */
export function encodeConfig(flags: number, agentCgroupId: bigint, peerCgroupId = 0n): Buffer {
  const buf = Buffer.alloc(LAYOUT.ferry_config.size);
  writeU32(buf, flags, LAYOUT.ferry_config.fields.flags);
  writeU64(buf, agentCgroupId, LAYOUT.ferry_config.fields.agent_cgroup_id);
  writeU64(buf, peerCgroupId, LAYOUT.ferry_config.fields.peer_cgroup_id);
  return buf;
}

export function decodeConfig(buf: Buffer): { flags: number; agentCgroupId: bigint; peerCgroupId: bigint } {
  return {
    flags: readU32(buf, LAYOUT.ferry_config.fields.flags),
    agentCgroupId: readU64(buf, LAYOUT.ferry_config.fields.agent_cgroup_id),
    peerCgroupId: readU64(buf, LAYOUT.ferry_config.fields.peer_cgroup_id),
  };
}

/** A ferry_deliveries key: the connection request as it arrives at the app (local) from `remote`. */
export function encodeDeliveryKey(local: SocketAddress, remote: SocketAddress): Buffer {
  const f = LAYOUT.ferry_delivery_key.fields;
  const buf = Buffer.alloc(LAYOUT.ferry_delivery_key.size);
  const l = addressBytes(local.ip);
  const r = addressBytes(remote.ip);
  if (l.family !== r.family) throw new TypeError(`delivery key: ${local.ip} and ${remote.ip} are of different families`);
  writeU32(buf, l.family, f.family);
  writeU16(buf, local.port, f.local_port);
  writeU16(buf, remote.port, f.remote_port);
  l.bytes.copy(buf, f.local);
  r.bytes.copy(buf, f.remote);
  return buf;
}

export function decodeU64(buf: Buffer): bigint {
  return readU64(buf, 0);
}

export function encodeU32(value: number): Buffer {
  const buf = Buffer.alloc(4);
  writeU32(buf, value, 0);
  return buf;
}
