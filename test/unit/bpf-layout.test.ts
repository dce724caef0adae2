// Tests for src/capture/bpf-layout.ts: address encoding and the byte layouts of BPF map keys and
// values, read back at the LAYOUT offsets. test/bpf/shared-constants.test.ts checks LAYOUT itself
// against the C header; this file checks the encoders put each field where LAYOUT says.
import { test, describe } from 'node:test';
import * as assert from 'node:assert/strict';
import * as os from 'node:os';
import {
  AF_INET,
  AF_INET6,
  BPF_CONSTANTS,
  LAYOUT,
  VERDICTS,
  addressBytes,
  addressText,
  decodeConfig,
  decodeOrigin,
  decodeSockaddr,
  encodeConfig,
  encodeConnKey,
  encodeDeliveryKey,
  encodeIpKey,
  encodePod,
  encodeSockaddr,
  type SocketAddress,
} from '../../src/capture/bpf-layout';

// Map keys and values are in host byte order (the programs run on this machine); ports in
// ferry_sockaddr are network order (port_be), as the kernel's bpf_sock_addr has them.
const LE = os.endianness() === 'LE';
const u32 = (buf: Buffer, at: number): number => (LE ? buf.readUInt32LE(at) : buf.readUInt32BE(at));
const u16 = (buf: Buffer, at: number): number => (LE ? buf.readUInt16LE(at) : buf.readUInt16BE(at));
const u64 = (buf: Buffer, at: number): bigint => (LE ? buf.readBigUInt64LE(at) : buf.readBigUInt64BE(at));

function hex(bytes: Buffer): string {
  return bytes.toString('hex');
}

describe('addressBytes and addressText', () => {
  test('IPv4: AF_INET, the four bytes first, the rest zero', () => {
    const { family, bytes } = addressBytes('10.1.2.255');
    assert.equal(family, AF_INET);
    assert.equal(bytes.length, 16);
    assert.equal(hex(bytes), `0a0102ff${'00'.repeat(12)}`);
    assert.equal(addressText(AF_INET, bytes), '10.1.2.255');
  });

  const ipv6Cases: Array<[text: string, bytes: string]> = [
    ['::1', `${'00'.repeat(15)}01`],
    ['::', '00'.repeat(16)],
    ['fd00::1', `fd00${'00'.repeat(13)}01`],
    ['1::', `0001${'00'.repeat(14)}`],
    ['2001:db8:0:1:2:3:4:5', '20010db8000000010002000300040005'],
    ['fe80::a:b', `fe80${'00'.repeat(10)}000a000b`],
    ['::ffff:10.0.0.1', `${'00'.repeat(10)}ffff0a000001`],
  ];
  for (const [text, bytes] of ipv6Cases) {
    test(`IPv6 ${text}: AF_INET6 and its 16 bytes in network order`, () => {
      const encoded = addressBytes(text);
      assert.equal(encoded.family, AF_INET6);
      assert.equal(hex(encoded.bytes), bytes);
    });
  }

  test('IPv6 text comes back in compressed lower-case form', () => {
    assert.equal(addressText(AF_INET6, Buffer.from(`${'00'.repeat(15)}01`, 'hex')), '::1');
    assert.equal(addressText(AF_INET6, Buffer.from(`fd00${'00'.repeat(13)}01`, 'hex')), 'fd00::1');
    assert.equal(addressText(AF_INET6, addressBytes('FD00:0:0:0:0:0:0:00AB').bytes), 'fd00::ab');
    assert.equal(addressText(AF_INET6, addressBytes('2001:db8:0:1:2:3:4:5').bytes), '2001:db8:0:1:2:3:4:5');
    assert.equal(addressText(AF_INET6, Buffer.alloc(16)), '::');
  });

  test('an IPv4-mapped IPv6 address comes back as ::ffff:a.b.c.d', () => {
    // RFC 5952 section 5 (which addressText cites) recommends the dotted form for mapped
    // addresses, and it is how Node prints them (socket.remoteAddress) and what
    // node-proxy's stripMapped() looks for.
    assert.equal(addressText(AF_INET6, addressBytes('::ffff:10.0.0.1').bytes), '::ffff:10.0.0.1');
  });

  test('an invalid address is a TypeError naming it', () => {
    for (const bad of ['', 'not-an-ip', '10.0.0.256', '10.0.0.1/24', '1.2.3', 'fd00:::1', 'gggg::1']) {
      assert.throws(
        () => addressBytes(bad),
        (err: unknown) => {
          assert.ok(err instanceof TypeError, `${bad}: ${String(err)}`);
          assert.ok(err.message.includes(`"${bad}"`), err.message);
          return true;
        },
      );
    }
    assert.throws(() => encodeIpKey('example.com'), TypeError);
    assert.throws(() => encodeSockaddr({ family: 4, ip: '999.1.1.1', port: 80 }), TypeError);
  });
});

describe('encodeIpKey', () => {
  test('ferry_ip: the family, then the 16 address bytes', () => {
    const f = LAYOUT.ferry_ip.fields;
    const v4 = encodeIpKey('192.168.7.9');
    assert.equal(v4.length, LAYOUT.ferry_ip.size);
    assert.equal(u32(v4, f.family), AF_INET);
    assert.equal(hex(v4.subarray(f.addr, f.addr + 16)), `c0a80709${'00'.repeat(12)}`);

    const v6 = encodeIpKey('fd00::1');
    assert.equal(u32(v6, f.family), AF_INET6);
    assert.equal(hex(v6.subarray(f.addr, f.addr + 16)), `fd00${'00'.repeat(13)}01`);
  });

  test('equal addresses give equal keys whatever their spelling', () => {
    assert.deepEqual(encodeIpKey('FD00:0::1'), encodeIpKey('fd00::1'));
    assert.notDeepEqual(encodeIpKey('10.0.0.1'), encodeIpKey('::ffff:10.0.0.1'));
  });
});

describe('encodeSockaddr and decodeSockaddr', () => {
  const cases: SocketAddress[] = [
    { family: 4, ip: '10.96.0.10', port: 80 },
    { family: 4, ip: '255.255.255.255', port: 65535 },
    { family: 6, ip: '::1', port: 15001 },
    { family: 6, ip: 'fd00::1', port: 1 },
    { family: 6, ip: '2001:db8::8:800:200c:417a', port: 8443 },
  ];
  for (const address of cases) {
    test(`round trip ${address.ip} port ${address.port}`, () => {
      const buf = encodeSockaddr(address);
      assert.equal(buf.length, LAYOUT.ferry_sockaddr.size);
      assert.deepEqual(decodeSockaddr(buf), address);
    });
  }

  test('fields at the LAYOUT offsets: family in host order, port big-endian, address bytes', () => {
    const f = LAYOUT.ferry_sockaddr.fields;
    const buf = encodeSockaddr({ family: 4, ip: '10.0.0.7', port: 0x1f90 });
    assert.equal(u32(buf, f.family), AF_INET);
    assert.equal(buf[f.port_be], 0x1f);
    assert.equal(buf[f.port_be + 1], 0x90);
    assert.equal(buf.readUInt16LE(f.pad), 0);
    assert.equal(hex(buf.subarray(f.addr, f.addr + 16)), `0a000007${'00'.repeat(12)}`);
  });

  test('encodes into a larger buffer at an offset and decodes from there', () => {
    const buf = Buffer.alloc(64, 0xaa);
    encodeSockaddr({ family: 6, ip: 'fd00::5', port: 443 }, buf, 8);
    assert.equal(hex(buf.subarray(0, 8)), 'aa'.repeat(8));
    assert.deepEqual(decodeSockaddr(buf, 8), { family: 6, ip: 'fd00::5', port: 443 });
  });

  test('an IPv4-mapped address survives the round trip as the same address', () => {
    const decoded = decodeSockaddr(encodeSockaddr({ family: 6, ip: '::ffff:10.0.0.1', port: 80 }));
    assert.equal(decoded.family, 6);
    assert.equal(decoded.port, 80);
    assert.deepEqual(addressBytes(decoded.ip), addressBytes('::ffff:10.0.0.1'));
  });
});

describe('encodePod', () => {
  const f = LAYOUT.ferry_pod.fields;
  const cidr = LAYOUT.ferry_cidr;

  test('flags, pod id, excluded ports and CIDRs at the LAYOUT offsets', () => {
    const buf = encodePod({
      state: 'enrolled',
      podId: 0x01020304,
      excludedPorts: [22, 15021, 65535],
      excludedCidrs: ['169.254.0.0/16', 'fd00:1::/64'],
    });
    assert.equal(buf.length, LAYOUT.ferry_pod.size);
    assert.equal(u32(buf, f.flags), BPF_CONSTANTS.FERRY_POD_ENROLLED);
    assert.equal(u32(buf, f.pod_id), 0x01020304);
    const ports = Array.from({ length: BPF_CONSTANTS.FERRY_MAX_EXCLUDED_PORTS }, (_, i) => u16(buf, f.excluded_ports + 2 * i));
    assert.deepEqual(ports, [22, 15021, 65535, 0, 0, 0, 0, 0]);

    const first = f.excluded_cidrs;
    assert.equal(u32(buf, first + cidr.fields.family), AF_INET);
    assert.equal(u32(buf, first + cidr.fields.prefix_len), 16);
    assert.equal(hex(buf.subarray(first + cidr.fields.addr, first + cidr.fields.addr + 16)), `a9fe0000${'00'.repeat(12)}`);

    const second = f.excluded_cidrs + cidr.size;
    assert.equal(u32(buf, second + cidr.fields.family), AF_INET6);
    assert.equal(u32(buf, second + cidr.fields.prefix_len), 64);
    assert.equal(hex(buf.subarray(second + cidr.fields.addr, second + cidr.fields.addr + 16)), `fd000001${'00'.repeat(12)}`);

    // Unused CIDR slots stay zero (family 0: the BPF side skips them).
    assert.ok(buf.subarray(f.excluded_cidrs + 2 * cidr.size).every((b) => b === 0));
  });

  test('a locked pod (enrolment incomplete) carries FERRY_POD_LOCKED and not FERRY_POD_ENROLLED', () => {
    const buf = encodePod({ state: 'locked', podId: 3, excludedPorts: [], excludedCidrs: [] });
    assert.equal(u32(buf, f.flags), BPF_CONSTANTS.FERRY_POD_LOCKED);
    assert.notEqual(BPF_CONSTANTS.FERRY_POD_LOCKED & BPF_CONSTANTS.FERRY_POD_ENROLLED, BPF_CONSTANTS.FERRY_POD_LOCKED);
  });

  test('the table fills exactly: the last port and CIDR slots end at the struct end', () => {
    const ports = [1, 2, 3, 4, 5, 6, 7, 8];
    const cidrs = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10'];
    assert.equal(ports.length, BPF_CONSTANTS.FERRY_MAX_EXCLUDED_PORTS);
    assert.equal(cidrs.length, BPF_CONSTANTS.FERRY_MAX_EXCLUDED_CIDRS);
    const buf = encodePod({ state: 'enrolled', podId: 9, excludedPorts: ports, excludedCidrs: cidrs });
    assert.equal(u16(buf, f.excluded_ports + 2 * 7), 8);
    const last = f.excluded_cidrs + 3 * cidr.size;
    assert.equal(last + cidr.size, LAYOUT.ferry_pod.size);
    assert.equal(u32(buf, last + cidr.fields.prefix_len), 10);
    assert.equal(hex(buf.subarray(last + cidr.fields.addr, last + cidr.fields.addr + 4)), '64400000');
  });

  test('more excluded ports than the table holds is a RangeError', () => {
    assert.throws(
      () => encodePod({ state: 'enrolled', podId: 1, excludedPorts: [1, 2, 3, 4, 5, 6, 7, 8, 9], excludedCidrs: [] }),
      (err: unknown) => err instanceof RangeError && /at most 8 excluded ports, got 9/.test(err.message),
    );
  });

  test('more excluded CIDRs than the table holds is a RangeError', () => {
    assert.throws(
      () =>
        encodePod({
          state: 'enrolled',
          podId: 1,
          excludedPorts: [],
          excludedCidrs: ['1.0.0.0/8', '2.0.0.0/8', '3.0.0.0/8', '4.0.0.0/8', '5.0.0.0/8'],
        }),
      (err: unknown) => err instanceof RangeError && /at most 4 excluded CIDRs, got 5/.test(err.message),
    );
  });

  test('an excluded CIDR with an invalid address is a TypeError', () => {
    assert.throws(() => encodePod({ state: 'enrolled', podId: 1, excludedPorts: [], excludedCidrs: ['10.0.0/8'] }), TypeError);
  });

  test('an excluded CIDR without a valid prefix length is refused, not encoded as /0', () => {
    // A prefix of 0 matches every address: encoding "10.0.0.0" (no "/len") or "10.0.0.0/33" as /0
    // or /33 would exempt all IPv4 traffic of the pod from capture (fail open). The snapshot schema
    // only checks these are strings, so this encoder is the last place to catch it.
    for (const bad of ['10.0.0.0', '10.0.0.0/', '10.0.0.0/33', '10.0.0.0/-1', '10.0.0.0/abc', 'fd00::/129']) {
      assert.throws(
        () => encodePod({ state: 'enrolled', podId: 1, excludedPorts: [], excludedCidrs: [bad] }),
        (err: unknown) => err instanceof Error && err.message.includes(bad),
        `excluded CIDR "${bad}" was accepted`,
      );
    }
  });
});

describe('connection keys and origins', () => {
  test('encodeConnKey: netns cookie, family and local port at the LAYOUT offsets', () => {
    const f = LAYOUT.ferry_conn_key.fields;
    const cookie = 0x0102030405060708n;
    const v4 = encodeConnKey(cookie, 4, 40123);
    assert.equal(v4.length, LAYOUT.ferry_conn_key.size);
    assert.equal(u64(v4, f.netns_cookie), cookie);
    assert.equal(u32(v4, f.family), AF_INET);
    assert.equal(u32(v4, f.local_port), 40123);

    const v6 = encodeConnKey(0xffff_ffff_ffff_fffen, 6, 1);
    assert.equal(u64(v6, f.netns_cookie), 0xffff_ffff_ffff_fffen);
    assert.equal(u32(v6, f.family), AF_INET6);
    assert.equal(u32(v6, f.local_port), 1);
  });

  test('decodeOrigin reads the destination and the socket cookie at the LAYOUT offsets', () => {
    const f = LAYOUT.ferry_origin.fields;
    const buf = Buffer.alloc(LAYOUT.ferry_origin.size);
    encodeSockaddr({ family: 4, ip: '10.96.0.10', port: 8080 }, buf, f.dst);
    if (LE) buf.writeBigUInt64LE(0xdeadbeefcafef00dn, f.socket_cookie);
    else buf.writeBigUInt64BE(0xdeadbeefcafef00dn, f.socket_cookie);
    assert.deepEqual(decodeOrigin(buf), {
      destination: { family: 4, ip: '10.96.0.10', port: 8080 },
      socketCookie: 0xdeadbeefcafef00dn,
    });

    const v6 = Buffer.alloc(LAYOUT.ferry_origin.size);
    encodeSockaddr({ family: 6, ip: 'fd00:96::a', port: 443 }, v6, f.dst);
    assert.deepEqual(decodeOrigin(v6), { destination: { family: 6, ip: 'fd00:96::a', port: 443 }, socketCookie: 0n });
  });
});

describe('encodeConfig and encodeDeliveryKey', () => {
  test('config: flags, the agent cgroup id and its hand-over peer at the LAYOUT offsets, decoded back', () => {
    const buf = encodeConfig(BPF_CONSTANTS.FERRY_CONFIG_SERVICE_LB, 0x0102030405060708n, 0x1112131415161718n);
    assert.equal(buf.length, LAYOUT.ferry_config.size);
    assert.equal(u32(buf, LAYOUT.ferry_config.fields.flags), BPF_CONSTANTS.FERRY_CONFIG_SERVICE_LB);
    assert.equal(u64(buf, LAYOUT.ferry_config.fields.agent_cgroup_id), 0x0102030405060708n);
    assert.equal(u64(buf, LAYOUT.ferry_config.fields.peer_cgroup_id), 0x1112131415161718n);
    assert.deepEqual(decodeConfig(buf), {
      flags: BPF_CONSTANTS.FERRY_CONFIG_SERVICE_LB,
      agentCgroupId: 0x0102030405060708n,
      peerCgroupId: 0x1112131415161718n,
    });
    assert.equal(decodeConfig(encodeConfig(0, 7n)).peerCgroupId, 0n, 'no peer unless one is given');
  });

  test('delivery key: family, host-order ports, the app address as local and the source as remote', () => {
    const buf = encodeDeliveryKey({ family: 4, ip: '10.244.1.10', port: 8080 }, { family: 4, ip: '10.244.0.12', port: 40001 });
    const f = LAYOUT.ferry_delivery_key.fields;
    assert.equal(buf.length, LAYOUT.ferry_delivery_key.size);
    assert.equal(u32(buf, f.family), AF_INET);
    assert.equal(u16(buf, f.local_port), 8080);
    assert.equal(u16(buf, f.remote_port), 40001);
    assert.equal(hex(buf.subarray(f.local, f.local + 16)), `0af4010a${'00'.repeat(12)}`);
    assert.equal(hex(buf.subarray(f.remote, f.remote + 16)), `0af4000c${'00'.repeat(12)}`);
    const v6 = encodeDeliveryKey({ family: 6, ip: 'fd10:244:1::a', port: 80 }, { family: 6, ip: 'fd10:244::c', port: 1 });
    assert.equal(u32(v6, f.family), AF_INET6);
    assert.equal(hex(v6.subarray(f.local, f.local + 16)), `${'fd100244000100000000000000000000'.slice(0, 30)}0a`);
  });

  test('a delivery key of mixed families is refused', () => {
    assert.throws(() => encodeDeliveryKey({ family: 4, ip: '10.0.0.1', port: 1 }, { family: 6, ip: 'fd00::1', port: 1 }), TypeError);
  });

  test('every verdict index below FERRY_VERDICT_COUNT is named exactly once', () => {
    const indexes = VERDICTS.map((v) => v.index).sort((a, b) => a - b);
    assert.deepEqual(
      indexes,
      Array.from({ length: BPF_CONSTANTS.FERRY_VERDICT_COUNT }, (_, i) => i),
    );
    assert.equal(new Set(VERDICTS.map((v) => `${v.program}/${v.verdict}`)).size, VERDICTS.length);
  });
});
