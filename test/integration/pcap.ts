// Reads a classic pcap file (what `tcpdump -w` writes) into IPv4 TCP segments, so a test can look
// at what really crossed a link. Format: pcap-savefile(5); Ethernet II, IPv4 (RFC 791), TCP (RFC 9293).

export interface TcpSegment {
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  payload: Buffer;
}

const LINKTYPE_ETHERNET = 1;
const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_VLAN = 0x8100;
const IPPROTO_TCP = 6;

export function readPcap(file: Buffer): TcpSegment[] {
  if (file.length < 24) throw new Error('pcap: file shorter than its global header');
  const magic = file.readUInt32LE(0);
  // 0xa1b2c3d4 (µs) or 0xa1b23c4d (ns) written little- or big-endian.
  const little = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  const big = magic === 0xd4c3b2a1 || magic === 0x4d3cb2a1;
  if (!little && !big) throw new Error(`pcap: bad magic 0x${magic.toString(16)}`);
  const u32 = (offset: number): number => (little ? file.readUInt32LE(offset) : file.readUInt32BE(offset));
  const linkType = u32(20) & 0x0fffffff;
  if (linkType !== LINKTYPE_ETHERNET) throw new Error(`pcap: link type ${linkType}, expected Ethernet (1)`);
  const segments: TcpSegment[] = [];
  for (let offset = 24; offset + 16 <= file.length; ) {
    const captured = u32(offset + 8);
    const frame = file.subarray(offset + 16, offset + 16 + captured);
    offset += 16 + captured;
    let etherType = frame.length >= 14 ? frame.readUInt16BE(12) : 0;
    let ip = 14;
    if (etherType === ETHERTYPE_VLAN && frame.length >= 18) {
      etherType = frame.readUInt16BE(16);
      ip = 18;
    }
    if (etherType !== ETHERTYPE_IPV4 || frame.length < ip + 20) continue;
    const ihl = (frame[ip] & 0x0f) * 4;
    const totalLength = frame.readUInt16BE(ip + 2);
    if (frame[ip + 9] !== IPPROTO_TCP) continue;
    const tcp = ip + ihl;
    if (frame.length < tcp + 20) continue;
    const dataOffset = (frame[tcp + 12] >> 4) * 4;
    const end = Math.min(frame.length, ip + totalLength);
    segments.push({
      src: [...frame.subarray(ip + 12, ip + 16)].join('.'),
      dst: [...frame.subarray(ip + 16, ip + 20)].join('.'),
      srcPort: frame.readUInt16BE(tcp),
      dstPort: frame.readUInt16BE(tcp + 2),
      payload: frame.subarray(tcp + dataOffset, end),
    });
  }
  return segments;
}
