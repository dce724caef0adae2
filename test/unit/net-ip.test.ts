// Tests for src/net/ip.ts: IPv6 text ↔ 128 bits, with formatIpv6 giving RFC 5952's canonical form.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { formatIpv6, ipv6ToBigInt, parseIpv4 } from '../../src/net';

const bits = (groups: number[]): bigint => groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);

test('formatIpv6 writes RFC 5952 canonical text', () => {
  const cases: Array<[number[], string]> = [
    // §4.2.1: the longest run of zero groups is shortened.
    [[0x2001, 0xdb8, 0, 0, 0, 0, 2, 1], '2001:db8::2:1'],
    // §4.2.2: a single zero group is not.
    [[0x2001, 0xdb8, 0, 1, 1, 1, 1, 1], '2001:db8:0:1:1:1:1:1'],
    // §4.2.3: of two runs the longer one, and of equal runs the first.
    [[0x2001, 0, 0, 1, 0, 0, 0, 1], '2001:0:0:1::1'],
    [[0x2001, 0xdb8, 0, 0, 1, 0, 0, 1], '2001:db8::1:0:0:1'],
    // §4.1 and §4.3: no leading zeros, lowercase.
    [[0x2001, 0x0db8, 0xabcd, 0x0012, 0, 0, 0, 0x00ef], '2001:db8:abcd:12::ef'],
    [[0, 0, 0, 0, 0, 0, 0, 0], '::'],
    [[0, 0, 0, 0, 0, 0, 0, 1], '::1'],
    [[1, 0, 0, 0, 0, 0, 0, 0], '1::'],
    [[0xfe80, 0, 0, 0, 0x9c24, 0x6cff, 0xfe93, 0x5644], 'fe80::9c24:6cff:fe93:5644'],
    [[0xfd10, 0x244, 0, 0, 0, 0, 0, 0x12], 'fd10:244::12'],
    [[0xfd10, 0x244, 1, 0, 0, 0, 0, 0x12], 'fd10:244:1::12'],
    [[0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff], 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
  ];
  for (const [groups, text] of cases) {
    assert.equal(formatIpv6(bits(groups)), text);
    assert.equal(ipv6ToBigInt(text), bits(groups), text);
  }
});

test('formatIpv6 agrees with the WHATWG URL serialiser, which also compresses canonically', () => {
  // A fixed linear congruential sequence: the same 2000 addresses every run, most of them rich in zero groups.
  let seed = 12345;
  const next = (): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed;
  };
  for (let n = 0; n < 2000; n++) {
    const groups = Array.from({ length: 8 }, () => (next() % 3 === 0 ? next() % 0x10000 : 0));
    const value = bits(groups);
    const text = formatIpv6(value);
    assert.equal(text, new URL(`http://[${text}]/`).hostname.slice(1, -1), groups.join(':'));
    assert.equal(new URL(`http://[${groups.map((g) => g.toString(16)).join(':')}]/`).hostname, `[${text}]`);
    assert.equal(ipv6ToBigInt(text), value);
  }
});

test('formatIpv6 refuses what is not 128 bits', () => {
  assert.throws(() => formatIpv6(-1n), RangeError);
  assert.throws(() => formatIpv6(1n << 128n), RangeError);
});

test('parseIpv4 and an embedded IPv4 tail', () => {
  assert.equal(parseIpv4('10.244.1.12'), 0x0af4010c);
  assert.equal(parseIpv4('fd10::1'), undefined);
  assert.equal(ipv6ToBigInt('::ffff:10.244.1.12'), bits([0, 0, 0, 0, 0, 0xffff, 0x0af4, 0x010c]));
});
