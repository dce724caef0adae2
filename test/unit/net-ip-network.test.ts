// Tests for src/net: the one parser of IP addresses and networks (host bits, IPv4-mapped IPv6, zone indexes,
// prefix lengths per family), RFC 5952 formatting, and containment. Pure computation.
import { test, describe } from 'node:test';
import * as assert from 'node:assert/strict';
import {
  formatIpNetwork,
  formatIpv6,
  ipNetworkContains,
  ipNetworkWarning,
  ipv4Mask,
  ipv6Mask,
  ipv6ToBigInt,
  parseIp,
  parseIpNetwork,
  type IpNetwork,
} from '../../src/net';

function network(text: string): IpNetwork {
  const parsed = parseIpNetwork(text);
  assert.ok(!('problem' in parsed), `${text}: ${'problem' in parsed ? parsed.problem : ''}`);
  return parsed;
}

function problem(text: string): string {
  const parsed = parseIpNetwork(text);
  assert.ok('problem' in parsed, `${text} was accepted as ${'problem' in parsed ? '' : formatIpNetwork(parsed)}`);
  return parsed.problem;
}

describe('parseIpNetwork', () => {
  test('IPv4 and IPv6 CIDRs: family, base, prefix length, nothing to warn about', () => {
    assert.deepEqual(network('10.0.0.0/8'), {
      family: 4,
      base: 0x0a000000,
      prefixLength: 8,
      hostBits: false,
      mapped: false,
      prefixWritten: true,
    });
    assert.deepEqual(network('fd00::/8'), {
      family: 6,
      base: 0xfdn << 120n,
      prefixLength: 8,
      hostBits: false,
      mapped: false,
      prefixWritten: true,
    });
    assert.equal(ipNetworkWarning(network('10.0.0.0/8')), undefined);
    assert.equal(ipNetworkWarning(network('fd00::/8')), undefined);
  });

  test('/0 in both families, and the full lengths', () => {
    assert.deepEqual(network('0.0.0.0/0'), { family: 4, base: 0, prefixLength: 0, hostBits: false, mapped: false, prefixWritten: true });
    assert.deepEqual(network('::/0'), { family: 6, base: 0n, prefixLength: 0, hostBits: false, mapped: false, prefixWritten: true });
    assert.equal(formatIpNetwork(network('255.255.255.255/32')), '255.255.255.255/32');
    assert.equal(formatIpNetwork(network('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128')), 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128');
    // Every address is in /0 of its own family, and in no network of the other.
    assert.ok(ipNetworkContains(network('0.0.0.0/0'), { family: 4, value: 0xffffffff }));
    assert.ok(ipNetworkContains(network('::/0'), { family: 6, value: (1n << 128n) - 1n }));
    assert.ok(!ipNetworkContains(network('::/0'), { family: 4, value: 0 }));
    assert.ok(!ipNetworkContains(network('0.0.0.0/0'), { family: 6, value: 0n }));
  });

  test('host bits are cleared, said, and named in the warning, in both families', () => {
    const v4 = network('10.0.0.1/8');
    assert.equal(v4.hostBits, true);
    assert.equal(v4.base, 0x0a000000);
    assert.equal(ipNetworkWarning(v4), 'has host bits set; using 10.0.0.0/8');
    const v6 = network('fd00::1/64');
    assert.equal(v6.hostBits, true);
    assert.equal(ipNetworkWarning(v6), 'has host bits set; using fd00::/64');
    // /0 with an address: everything, as ParsePrefix("10.1.2.3/0").Masked() is 0.0.0.0/0.
    assert.equal(ipNetworkWarning(network('10.1.2.3/0')), 'has host bits set; using 0.0.0.0/0');
    assert.equal(ipNetworkWarning(network('fd00::1/0')), 'has host bits set; using ::/0');
  });

  test('a bare address is a network of one address, and says the prefix was not written', () => {
    assert.deepEqual(network('10.1.2.3'), {
      family: 4,
      base: 0x0a010203,
      prefixLength: 32,
      hostBits: false,
      mapped: false,
      prefixWritten: false,
    });
    assert.deepEqual(network('fd00::5'), {
      family: 6,
      base: ipv6ToBigInt('fd00::5'),
      prefixLength: 128,
      hostBits: false,
      mapped: false,
      prefixWritten: false,
    });
  });

  test('IPv4-mapped IPv6 is IPv4: its prefix length counts IPv6 bits, 96..128, and becomes the IPv4 one', () => {
    const cases: Array<[text: string, cidr: string, hostBits: boolean]> = [
      ['::ffff:10.0.0.0/104', '10.0.0.0/8', false],
      ['::ffff:a00:0/104', '10.0.0.0/8', false],
      ['0:0:0:0:0:ffff:10.0.0.1/128', '10.0.0.1/32', false],
      ['::ffff:10.0.0.1', '10.0.0.1/32', false],
      ['::ffff:0:0/96', '0.0.0.0/0', false],
      ['::ffff:10.1.2.3/112', '10.1.0.0/16', true],
    ];
    for (const [text, cidr, hostBits] of cases) {
      const parsed = network(text);
      assert.equal(parsed.family, 4, text);
      assert.equal(parsed.mapped, true, text);
      assert.equal(parsed.hostBits, hostBits, text);
      assert.equal(formatIpNetwork(parsed), cidr, text);
      assert.equal(
        ipNetworkWarning(parsed),
        `${hostBits ? 'has host bits set and ' : ''}is IPv4-mapped IPv6, matched as IPv4; using ${cidr}`,
      );
    }
    assert.equal(
      problem('::ffff:10.0.0.0/95'),
      'has a prefix length outside 96..128 (an IPv4-mapped address counts IPv6 bits: /96 is IPv4 /0)',
    );
    assert.equal(
      problem('::ffff:10.0.0.0/8'),
      'has a prefix length outside 96..128 (an IPv4-mapped address counts IPv6 bits: /96 is IPv4 /0)',
    );
    assert.equal(
      problem('::ffff:10.0.0.0/129'),
      'has a prefix length outside 96..128 (an IPv4-mapped address counts IPv6 bits: /96 is IPv4 /0)',
    );
    // Neighbours of ::ffff:0:0/96 are plain IPv6.
    assert.equal(network('::fffe:a00:0/104').family, 6);
    assert.equal(network('::1:ffff:a00:0/104').family, 6);
  });

  test('zone indexes are refused, with or without a prefix length', () => {
    assert.equal(problem('fe80::1%eth0'), 'has an IPv6 zone index (%eth0); zone indexes are not allowed');
    assert.equal(problem('fe80::%eth0/64'), 'has an IPv6 zone index (%eth0); zone indexes are not allowed');
    assert.equal(problem('10.0.0.1%eth0/8'), 'is not an IPv4 or IPv6 address or CIDR');
  });

  test("prefix lengths outside the family's range, or not plain decimal, are refused", () => {
    assert.equal(problem('10.0.0.0/33'), 'has a prefix length outside 0..32');
    assert.equal(problem('10.0.0.0/999'), 'has a prefix length outside 0..32');
    assert.equal(problem('fd00::/129'), 'has a prefix length outside 0..128');
    for (const text of ['10.0.0.0/', '10.0.0.0/-1', '10.0.0.0/abc', '10.0.0.0/08', '10.0.0.0/ 8', '10.0.0.0/8/8', '10.0.0.0/1000']) {
      assert.equal(problem(text), 'has a prefix length that is not a number in 0..32', text);
    }
    assert.equal(problem('fd00::/+8'), 'has a prefix length that is not a number in 0..128');
  });

  test('text that is no address is refused', () => {
    for (const text of ['', '/8', 'not-an-ip', '10.0.0/8', '10.0.0.256', '010.0.0.1/8', 'fd00:::1/64', 'example.com', ' 10.0.0.0/8']) {
      assert.equal(problem(text), 'is not an IPv4 or IPv6 address or CIDR', JSON.stringify(text));
    }
  });
});

describe('parseIp', () => {
  test('addresses only; IPv4-mapped is IPv4; zones and CIDRs are none', () => {
    assert.deepEqual(parseIp('10.0.0.1'), { family: 4, value: 0x0a000001 });
    assert.deepEqual(parseIp('::ffff:10.0.0.1'), { family: 4, value: 0x0a000001 });
    assert.deepEqual(parseIp('fd00::1'), { family: 6, value: (0xfd00n << 112n) | 1n });
    for (const text of ['fe80::1%eth0', '10.0.0.0/8', '', 'x']) assert.equal(parseIp(text), undefined, text);
  });
});

describe('masks and formatting', () => {
  test('ipv4Mask and ipv6Mask at the ends and in the middle', () => {
    assert.equal(ipv4Mask(0), 0);
    assert.equal(ipv4Mask(1), 0x80000000);
    assert.equal(ipv4Mask(24), 0xffffff00);
    assert.equal(ipv4Mask(32), 0xffffffff);
    assert.equal(ipv6Mask(0), 0n);
    assert.equal(ipv6Mask(128), (1n << 128n) - 1n);
    assert.equal(ipv6Mask(64), ((1n << 64n) - 1n) << 64n);
  });

  test('formatIpv6 writes RFC 5952 text', () => {
    const cases: Array<[string, string]> = [
      ['::', '::'],
      ['::1', '::1'],
      ['FD00:0:0:0:0:0:0:00AB', 'fd00::ab'],
      ['2001:db8:0:1:2:3:4:5', '2001:db8:0:1:2:3:4:5'], // §4.2.2: one zero group is not shortened
      ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // §4.2.3: the longest run
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // §4.2.3: the first of equal runs
      ['1::', '1::'],
    ];
    for (const [text, formatted] of cases) assert.equal(formatIpv6(ipv6ToBigInt(text)), formatted, text);
  });
});
