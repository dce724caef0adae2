// Tests for the CA (src/identity certificate-authority.ts) and its rotation state (ca-state.ts): what a leaf
// contains, which CSRs are refused, rotation phases and their order, who signs in each phase.
import { test, describe } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as x509 from '@peculiar/x509';
import {
  CertificateAuthority,
  CLOCK_SKEW_SECONDS,
  IdentityError,
  applyCaTransition,
  initialCaState,
  parseCaMetadata,
  spiffeUri,
  type SpiffeId,
} from '../../src/identity';
import { forgeCsr } from '../fixtures/certs';
import { MemoryCa } from '../fixtures/memory-ca';

const id: SpiffeId = { trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'cart' };
const URI = spiffeUri(id);

describe('CertificateAuthority.sign', () => {
  for (const intermediate of [false, true]) {
    test(`issues an X.509-SVID leaf ${intermediate ? 'under an intermediate' : 'from the root'}`, async () => {
      const ca = await CertificateAuthority.generate({ trustDomain: 'cluster.local', intermediate });
      const [rootPem] = await ca.trustBundle();
      const before = Date.now();
      const { chainPem } = await ca.sign({ csrPem: await forgeCsr({ uris: [URI] }), identity: id, ttlSeconds: 3600 });
      assert.equal(chainPem.length, intermediate ? 2 : 1, 'leaf (+ intermediate), never the root');
      const root = new crypto.X509Certificate(rootPem);
      assert.ok(!chainPem.some((p) => new crypto.X509Certificate(p).fingerprint256 === root.fingerprint256));

      const leaf = new x509.X509Certificate(chainPem[0]);
      assert.equal(leaf.subject, '', 'empty subject');
      const san = leaf.getExtension(x509.SubjectAlternativeNameExtension)!;
      assert.equal(san.critical, true, 'SAN critical with an empty subject (RFC 5280 §4.2.1.6)');
      assert.deepEqual(san.names.toJSON(), [{ type: 'url', value: URI }]);
      const bc = leaf.getExtension(x509.BasicConstraintsExtension)!;
      assert.equal(bc.ca, false);
      const ku = leaf.getExtension(x509.KeyUsagesExtension)!;
      assert.equal(ku.critical, true);
      assert.equal(ku.usages, x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment);
      assert.deepEqual(
        [...leaf.getExtension(x509.ExtendedKeyUsageExtension)!.usages],
        [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
      );
      const issuerCert = new x509.X509Certificate(intermediate ? chainPem[1] : rootPem);
      assert.equal(
        leaf.getExtension(x509.AuthorityKeyIdentifierExtension)!.keyId,
        issuerCert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId,
        'AKI = issuer SKI',
      );
      assert.ok(leaf.getExtension(x509.SubjectKeyIdentifierExtension));
      assert.ok(leaf.serialNumber.replace(/^00/, '').length >= 30, `serial ${leaf.serialNumber} is ~128 bits`);
      // Lifetime: now - 60 s (but not before the issuer) to now + ttl.
      assert.ok(leaf.notBefore.getTime() >= issuerCert.notBefore.getTime());
      assert.ok(leaf.notBefore.getTime() <= before);
      assert.ok(Math.abs(leaf.notAfter.getTime() - (before + 3600_000)) < 5000);

      // The chain verifies up to the root with node:crypto too.
      const chain = [...chainPem.map((p) => new crypto.X509Certificate(p)), root];
      for (let i = 0; i + 1 < chain.length; i += 1) assert.ok(chain[i].verify(chain[i + 1].publicKey), `link ${i}`);
      const rootX = new x509.X509Certificate(rootPem);
      assert.equal(rootX.getExtension(x509.BasicConstraintsExtension)!.critical, true);
      assert.equal(rootX.getExtension(x509.KeyUsagesExtension)!.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
      if (intermediate) assert.equal(issuerCert.getExtension(x509.BasicConstraintsExtension)!.pathLength, 0);
    });
  }

  test("never issues past the issuer's notAfter, and backdates no earlier than its notBefore", async () => {
    // A clock the test moves: the root is made at `t`; a CA whose clock then reads earlier than the
    // root's notBefore + skew (the issuer was made on a host whose clock ran ahead) must clip the leaf
    // to the issuer's validity, and otherwise backdates by exactly the skew.
    const t = Date.UTC(2026, 0, 1, 12, 0, 0, 500);
    let clock = t;
    const ca = await CertificateAuthority.generate({ trustDomain: 'cluster.local', rootLifetimeSeconds: 120, now: () => clock });
    const root = new crypto.X509Certificate((await ca.trustBundle())[0]);
    clock = t - 30_000;
    const clipped = new crypto.X509Certificate(
      (await ca.sign({ csrPem: await forgeCsr({ uris: [URI] }), identity: id, ttlSeconds: 86_400 })).chainPem[0],
    );
    assert.equal(clipped.validTo, root.validTo);
    assert.equal(clipped.validFrom, root.validFrom);
    clock = t + 10_000;
    const backdated = new crypto.X509Certificate(
      (await ca.sign({ csrPem: await forgeCsr({ uris: [URI] }), identity: id, ttlSeconds: 30 })).chainPem[0],
    );
    assert.equal(new Date(backdated.validFrom).getTime(), Math.floor((t + 10_000 - CLOCK_SKEW_SECONDS * 1000) / 1000) * 1000);
    assert.equal(new Date(backdated.validTo).getTime(), Math.floor((t + 40_000) / 1000) * 1000);
  });

  test("refuses CSRs that do not request exactly the identity's URI SAN, naming what they found", async () => {
    const ca = await CertificateAuthority.generate({ trustDomain: 'cluster.local' });
    const cases: Array<[string, Promise<string>, RegExp]> = [
      [
        'wrong URI',
        forgeCsr({ uris: ['spiffe://cluster.local/ns/shop/sa/admin'] }),
        /found URI:spiffe:\/\/cluster.local\/ns\/shop\/sa\/admin/,
      ],
      ['two URIs', forgeCsr({ uris: [URI, 'spiffe://cluster.local/ns/x/sa/y'] }), /found URI:spiffe.*, URI:spiffe/],
      ['URI and DNS', forgeCsr({ uris: [URI], dns: ['cart.shop'] }), /found URI:.*, DNS:cart.shop/],
      ['no SAN', forgeCsr({ uris: [] }), /expected one subjectAltName extension, found 0/],
      ['P-384 key', forgeCsr({ uris: [URI], curve: 'P-384' }), /key is ECDSA P-384, expected ECDSA P-256/],
      ['bad signature', forgeCsr({ uris: [URI], tamper: true }), /signature does not verify/],
    ];
    for (const [name, csr, message] of cases) {
      await assert.rejects(ca.sign({ csrPem: await csr, identity: id, ttlSeconds: 60 }), (err: unknown) => {
        assert.ok(err instanceof IdentityError, name);
        assert.equal(err.code, 'FERRY_ERR_IDENTITY_CSR', name);
        assert.match(err.message, message, name);
        assert.ok(err.message.includes(URI), `${name}: names the identity`);
        return true;
      });
    }
    await assert.rejects(ca.sign({ csrPem: 'not a csr', identity: id, ttlSeconds: 60 }), /not a PEM PKCS#10 request/);
    await assert.rejects(
      ca.sign({
        csrPem: await forgeCsr({ uris: ['spiffe://other.td/ns/shop/sa/cart'] }),
        identity: { ...id, trustDomain: 'other.td' },
        ttlSeconds: 60,
      }),
      /trust domain "other.td" is not this CA's "cluster.local"/,
    );
    await assert.rejects(
      ca.sign({ csrPem: await forgeCsr({ uris: [URI] }), identity: id, ttlSeconds: 0 }),
      /ttlSeconds must be a positive/,
    );
  });
});

describe('the CA rotation state (ca-state.ts), as the controller keeps it in its Secret', () => {
  test('a new CA: ca.json, certificates and keys, generation 1, steady', async () => {
    const transition = await initialCaState({ trustDomain: 'cluster.local', intermediate: true });
    assert.deepEqual(transition.metadata, {
      version: 1,
      trustDomain: 'cluster.local',
      generation: 1,
      issuer: 'intermediate-1',
      roots: ['root-1'],
      phase: 'steady',
      intermediate: true,
    });
    const files = applyCaTransition({}, transition);
    assert.deepEqual(Object.keys(files).sort(), [
      'ca.json',
      'intermediate-1.cert.pem',
      'intermediate-1.chain.pem',
      'intermediate-1.key.pem',
      'root-1.cert.pem',
      'root-1.key.pem',
    ]);
    assert.deepEqual(
      transition.files.filter((f) => f.secret).map((f) => f.name),
      ['root-1.key.pem', 'intermediate-1.key.pem'],
    );
    await assert.rejects(initialCaState({ trustDomain: 'user@cluster.local' }), /must not contain userinfo/);
  });

  test('rotation runs begin → switch → finish, refusing any other order', async () => {
    const ca = await MemoryCa.create({ trustDomain: 'cluster.local' });
    const outOfOrder = (p: Promise<unknown>, message: RegExp) =>
      assert.rejects(p, (err: unknown) => {
        assert.ok(err instanceof IdentityError);
        assert.equal(err.code, 'FERRY_ERR_IDENTITY_ROTATION');
        assert.match(err.message, message);
        return true;
      });
    await outOfOrder(ca.switchIssuer(), /switchIssuer needs phase "rotating" but the CA is "steady" \(next step: beginRotation\)/);
    await outOfOrder(ca.finishRotation(), /finishRotation needs phase "switched"/);

    let m = await ca.beginRotation();
    assert.deepEqual([m.generation, m.issuer, m.roots, m.phase], [2, 'root-1', ['root-1', 'root-2'], 'rotating']);
    await outOfOrder(ca.beginRotation(), /next step: switchIssuer/);
    await outOfOrder(ca.finishRotation(), /but the CA is "rotating"/);

    m = await ca.switchIssuer();
    assert.deepEqual([m.generation, m.issuer, m.roots, m.phase], [3, 'root-2', ['root-1', 'root-2'], 'switched']);
    m = await ca.finishRotation();
    assert.deepEqual([m.generation, m.issuer, m.roots, m.phase], [4, 'root-2', ['root-2'], 'steady']);
    const dir = ca.writeTo(fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-ca-')));
    try {
      assert.ok(!fs.existsSync(path.join(dir, 'root-1.key.pem')), 'the retired root key is gone');
      assert.ok(fs.existsSync(path.join(dir, 'root-2.key.pem')));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the issuer the metadata names signs, through every phase, and the bundle follows the roots', async () => {
    const ca = await MemoryCa.create({ trustDomain: 'cluster.local', intermediate: true });
    const client = ca.client();
    const issuerOf = async (): Promise<string> => {
      const { chainPem } = await client.sign({ csrPem: await forgeCsr({ uris: [URI] }), identity: id, ttlSeconds: 60 });
      assert.equal(chainPem.length, 2);
      return new crypto.X509Certificate(chainPem[0]).issuer;
    };
    assert.match(await issuerOf(), /intermediate-1/);
    assert.equal((await client.trustBundle()).length, 1);
    await ca.beginRotation();
    assert.match(await issuerOf(), /intermediate-1/, 'the old authority still signs while rotating');
    assert.equal((await client.trustBundle()).length, 2);
    await ca.switchIssuer();
    assert.match(await issuerOf(), /intermediate-2/);
    await ca.finishRotation();
    const bundle = await client.trustBundle();
    assert.equal(bundle.length, 1);
    assert.match(new crypto.X509Certificate(bundle[0]).subject, /root-2/);
  });

  test('parseCaMetadata names the bad field', () => {
    const fail = (problem: string) => new Error(problem);
    const text = JSON.stringify({
      version: 1,
      trustDomain: 'td',
      generation: 1,
      issuer: '../etc',
      roots: ['root-1'],
      phase: 'steady',
      intermediate: false,
    });
    assert.throws(() => parseCaMetadata(text, fail), /field "issuer" must be an authority id/);
    assert.throws(() => parseCaMetadata('{', fail), /not valid JSON/);
  });
});

describe('CertificateAuthority.issueServing', () => {
  test('a serving certificate carries the SPIFFE ID and DNS names, chains to the root and passes a TLS client’s name check', async (t) => {
    const ca = await CertificateAuthority.generate({ trustDomain: 'cluster.local', intermediate: true });
    const controller: SpiffeId = { trustDomain: 'cluster.local', namespace: 'ferry-system', serviceAccount: 'ferry-controller' };
    const serving = await ca.issueServing({ identity: controller, dnsNames: ['ferry-controller.ferry-system.svc'], ttlSeconds: 3600 });
    const leaf = new crypto.X509Certificate(serving.certPem);
    assert.equal(
      leaf.subjectAltName,
      'URI:spiffe://cluster.local/ns/ferry-system/sa/ferry-controller, DNS:ferry-controller.ferry-system.svc',
    );
    assert.equal(serving.chainPem.length, 2, 'leaf and intermediate');
    const tls = await import('node:tls');
    const server = tls.createServer({ key: serving.keyPem, cert: serving.chainPem.join('') }, (socket) => socket.end('ok'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => server.close());
    const { port } = server.address() as { port: number };
    const roots = await ca.trustBundle();
    const connect = (servername: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = tls.connect({ host: '127.0.0.1', port, servername, ca: roots }, () => {
          socket.once('data', (data) => resolve(data.toString()));
        });
        socket.once('error', reject);
      });
    assert.equal(await connect('ferry-controller.ferry-system.svc'), 'ok');
    await assert.rejects(connect('other.ferry-system.svc'), /does not match certificate's altnames/);
    await assert.rejects(
      ca.issueServing({ identity: { ...controller, trustDomain: 'other.td' }, dnsNames: [], ttlSeconds: 60 }),
      /trust domain "other.td" is not this CA's "cluster.local"/,
    );
  });
});
