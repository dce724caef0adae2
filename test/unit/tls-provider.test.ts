// Tests for src/tls: real mutual TLS 1.3 handshakes on 127.0.0.1 with contexts from IdentityTlsProvider
// (with and without an intermediate), peer identity checks, forged client certificates, and a root rotation.
import { test, describe } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { CertificateAuthority, WorkloadCertificates, type CertificateAuthorityClient, type SpiffeId } from '../../src/identity';
import { createRootLogger } from '../../src/telemetry';
import {
  HBONE_ALPN_PROTOCOLS,
  HBONE_SECURE_CONTEXT_OPTIONS,
  IdentityTlsProvider,
  PeerIdentityError,
  verifyPeerIdentity,
  type PeerRejection,
} from '../../src/tls';
import type { TlsProvider as ProxyTlsProvider } from '../../src/proxy/types';
import { MemoryCa } from '../fixtures/memory-ca';
import { caDirectorySigner, forgeCertificate, foreignRootSigner, forgeLeaf, type ForgeOptions } from '../fixtures/certs';
import { within, type After } from './helpers';

const TD = 'cluster.local';
const client: SpiffeId = { trustDomain: TD, namespace: 'shop', serviceAccount: 'web' };
const server: SpiffeId = { trustDomain: TD, namespace: 'shop', serviceAccount: 'cart' };
const SERVER_PRINCIPAL = 'cluster.local/ns/shop/sa/cart';
const log = createRootLogger('silent');

function agent(ca: CertificateAuthorityClient, t: After): { certs: WorkloadCertificates; tlsProvider: IdentityTlsProvider } {
  const certs = new WorkloadCertificates({ ca, trustDomain: TD, ttlSeconds: 600, log });
  const tlsProvider = new IdentityTlsProvider(certs, log);
  t.after(() => {
    tlsProvider.close();
    certs.close();
  });
  return { certs, tlsProvider };
}

interface Outcome {
  /** The principal the server read from the client certificate. */
  serverPeer?: string;
  serverError?: string;
  clientError?: string;
  protocol?: string | null;
  alpn?: string | false | null;
}

/** One connection: the server requires a client certificate, as the HBONE server does. */
async function handshake(
  t: After,
  serverSide: { context: tls.SecureContext; provider: IdentityTlsProvider },
  clientSide: { context: tls.SecureContext; check?: (host: string, cert: tls.PeerCertificate) => Error | undefined },
): Promise<Outcome> {
  const outcome: Outcome = {};
  let serverDone!: () => void;
  const serverSettled = new Promise<void>((resolve) => {
    serverDone = resolve;
  });
  // As the HBONE server does it: tls.createServer ignores a `secureContext` option, so each accepted
  // socket is wrapped in a server TLSSocket with the identity's current context. Node checks the client
  // chain only for sockets a tls.Server made (onServerSocketSecure), so verifyError is read here too.
  const srv = net.createServer((raw) => {
    const socket = new tls.TLSSocket(raw, {
      isServer: true,
      secureContext: serverSide.context,
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: [...HBONE_ALPN_PROTOCOLS],
    });
    let settled = false;
    const settle = (update: () => void): void => {
      if (settled) return;
      settled = true;
      update();
      serverDone();
    };
    socket.once('secure', () =>
      settle(() => {
        const handle = (socket as unknown as { ssl?: { verifyError(): (Error & { code?: string }) | null } }).ssl;
        const chain = handle?.verifyError();
        try {
          if (chain) throw new Error(`client chain not trusted: ${chain.code ?? ''} ${chain.message}`);
          outcome.serverPeer = serverSide.provider.peerIdentity(socket.getPeerX509Certificate()!).principal;
        } catch (err) {
          outcome.serverError = (err as Error).message;
        }
        socket.end();
      }),
    );
    socket.once('error', (err) =>
      settle(() => {
        outcome.serverError = err.message;
      }),
    );
    socket.once('close', () =>
      settle(() => {
        outcome.serverError = 'closed before the handshake completed';
      }),
    );
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => srv.close(() => resolve())));
  const socket = tls.connect({
    host: '127.0.0.1',
    port: (srv.address() as AddressInfo).port,
    secureContext: clientSide.context,
    ALPNProtocols: [...HBONE_ALPN_PROTOCOLS],
    checkServerIdentity: clientSide.check ?? (() => undefined),
  });
  await within(
    new Promise<void>((resolve) => {
      socket.once('secureConnect', () => {
        outcome.protocol = socket.getProtocol();
        outcome.alpn = socket.alpnProtocol;
        resolve();
      });
      socket.once('error', (err) => {
        outcome.clientError = err.message;
        resolve();
      });
    }),
    5000,
    'the client side of the handshake',
  );
  socket.on('error', () => {}); // a TLS 1.3 client learns of its rejection after secureConnect
  await within(serverSettled, 5000, 'the server side of the handshake');
  socket.destroy();
  return outcome;
}

describe('IdentityTlsProvider', () => {
  for (const intermediate of [false, true]) {
    test(`mutual TLS 1.3 with ALPN h2 on loopback ${intermediate ? 'under an intermediate' : 'from the root'}`, async (t) => {
      const { certs, tlsProvider } = agent(await CertificateAuthority.generate({ trustDomain: TD, intermediate }), t);
      assert.equal(tlsProvider.contexts(SERVER_PRINCIPAL), undefined, 'no contexts before a certificate');
      await certs.fetch(client);
      await certs.fetch(server);
      const serverContexts = tlsProvider.contexts(tlsProvider.principalFor('shop', 'cart'))!;
      const clientContexts = tlsProvider.contexts('cluster.local/ns/shop/sa/web')!;
      assert.equal(serverContexts.notAfter.getTime(), certs.get(server)!.notAfter.getTime());
      const outcome = await handshake(
        t,
        { context: serverContexts.server, provider: tlsProvider },
        { context: clientContexts.client, check: tlsProvider.serverIdentityCheck(SERVER_PRINCIPAL) },
      );
      assert.deepEqual(outcome, { serverPeer: 'cluster.local/ns/shop/sa/web', protocol: 'TLSv1.3', alpn: 'h2' });

      // The client checks the server's exact identity.
      const wrong = await handshake(
        t,
        { context: serverContexts.server, provider: tlsProvider },
        { context: clientContexts.client, check: tlsProvider.serverIdentityCheck('cluster.local/ns/shop/sa/other') },
      );
      assert.match(wrong.clientError ?? '', /server is cluster.local\/ns\/shop\/sa\/cart, expected cluster.local\/ns\/shop\/sa\/other/);
    });
  }

  test('contexts are rebuilt on renewal and bundle change, and dropped on forget', async (t) => {
    const ca = await CertificateAuthority.generate({ trustDomain: TD });
    const { certs, tlsProvider } = agent(ca, t);
    const typed: ProxyTlsProvider = tlsProvider; // implements the proxy's interface structurally
    assert.equal(typed.trustDomain, TD);
    await certs.fetch(server);
    const first = tlsProvider.contexts(SERVER_PRINCIPAL)!;
    await certs.renewAll('test');
    const renewed = tlsProvider.contexts(SERVER_PRINCIPAL)!;
    assert.notEqual(renewed, first);
    certs.setTrustBundle([
      ...(await ca.trustBundle()),
      ...(await (await CertificateAuthority.generate({ trustDomain: TD })).trustBundle()),
    ]);
    assert.notEqual(tlsProvider.contexts(SERVER_PRINCIPAL), renewed);
    certs.forget(server);
    assert.equal(tlsProvider.contexts(SERVER_PRINCIPAL), undefined);
  });

  test('HBONE TLS constants: h2 only, TLS 1.3 only', () => {
    assert.deepEqual([...HBONE_ALPN_PROTOCOLS], ['h2']);
    assert.deepEqual({ ...HBONE_SECURE_CONTEXT_OPTIONS }, { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' });
  });
});

describe('peerIdentity', () => {
  test('accepts exactly one spiffe URI SAN of our trust domain (DNS SANs may accompany it)', async () => {
    const forged = await forgeCertificate(undefined, { uris: ['spiffe://cluster.local/ns/a/sa/b'], dns: ['b.a.svc'] });
    assert.deepEqual(verifyPeerIdentity(new crypto.X509Certificate(forged.certPem), TD), {
      trustDomain: TD,
      namespace: 'a',
      serviceAccount: 'b',
      principal: 'cluster.local/ns/a/sa/b',
    });
  });

  const refused: Array<[string, ForgeOptions, PeerRejection, RegExp]> = [
    ['no SAN', { uris: [] }, 'no-uri-san', /has no URI SAN/],
    ['only a DNS SAN', { uris: [], dns: ['cart.shop'] }, 'no-uri-san', /has no URI SAN/],
    [
      'two URI SANs',
      { uris: ['spiffe://cluster.local/ns/a/sa/b', 'spiffe://cluster.local/ns/a/sa/c'] },
      'multiple-uri-sans',
      /has 2 URI SANs \(spiffe:\/\/cluster.local\/ns\/a\/sa\/b, spiffe:\/\/cluster.local\/ns\/a\/sa\/c\)/,
    ],
    [
      'wrong trust domain',
      { uris: ['spiffe://evil.example/ns/a/sa/b'] },
      'trust-domain',
      /trust domain "evil.example" is not ours \("cluster.local"\)/,
    ],
    ['non-spiffe URI', { uris: ['https://cluster.local/ns/a/sa/b'] }, 'not-spiffe', /scheme is not "spiffe:\/\/"/],
    ['spiffe ID that is not a workload', { uris: ['spiffe://cluster.local/node/x'] }, 'not-spiffe', /is not \/ns\/<namespace>\/sa/],
    ['CA certificate', { uris: ['spiffe://cluster.local/ns/a/sa/b'], ca: true }, 'ca-certificate', /is a CA certificate/],
  ];
  for (const [name, options, reason, message] of refused) {
    test(`refuses ${name}`, async () => {
      const forged = await forgeCertificate(undefined, options);
      assert.throws(
        () => verifyPeerIdentity(new crypto.X509Certificate(forged.certPem), TD),
        (err: unknown) => {
          assert.ok(err instanceof PeerIdentityError);
          assert.equal(err.code, 'FERRY_ERR_TLS_PEER_IDENTITY');
          assert.equal(err.reason, reason);
          assert.match(err.message, message);
          assert.match(err.message, /^peer certificate serial [0-9A-F]+: /);
          return true;
        },
      );
    });
  }
});

describe('forged client certificates against the mesh CA', () => {
  test('the server refuses expired, not-yet-valid, self-signed, foreign and wrong-identity clients', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-tls-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const ca = await MemoryCa.create({ trustDomain: TD, intermediate: true });
    ca.writeTo(dir);
    const { certs, tlsProvider } = agent(ca.client(), t);
    await certs.fetch(server);
    const serverSide = { context: tlsProvider.contexts(SERVER_PRINCIPAL)!.server, provider: tlsProvider };
    const uri = 'spiffe://cluster.local/ns/shop/sa/web';
    const hour = 3600_000;
    const attempt = async (forged: { chainPem: string[]; keyPem: string }): Promise<Outcome> =>
      handshake(t, serverSide, {
        context: tls.createSecureContext({
          ...HBONE_SECURE_CONTEXT_OPTIONS,
          cert: forged.chainPem.join(''),
          key: forged.keyPem,
          ca: certs.trustBundle().slice(),
        }),
      });
    // The control case: a forged leaf that is in fact valid is accepted.
    assert.deepEqual((await attempt(await forgeLeaf(dir, { uris: [uri] }))).serverPeer, 'cluster.local/ns/shop/sa/web');
    const cases: Array<[string, Promise<{ chainPem: string[]; keyPem: string }>, RegExp]> = [
      [
        'expired',
        forgeLeaf(dir, { uris: [uri], notBefore: new Date(Date.now() - 2 * hour), notAfter: new Date(Date.now() - hour) }),
        /certificate has expired|CERTIFICATE_EXPIRED/i,
      ],
      [
        'not yet valid',
        forgeLeaf(dir, { uris: [uri], notBefore: new Date(Date.now() + hour), notAfter: new Date(Date.now() + 2 * hour) }),
        /not yet valid|CERTIFICATE_NOT_YET_VALID/i,
      ],
      ['self-signed', forgeLeaf(dir, { uris: [uri], selfSigned: true }), /self[- ]signed|unable to get local issuer|unknown ca/i],
      [
        'foreign CA',
        foreignRootSigner().then((s) => forgeCertificate(s, { uris: [uri] })),
        /UNABLE_TO_VERIFY_LEAF_SIGNATURE|unable to get local issuer/i,
      ],
      ['wrong trust domain', forgeLeaf(dir, { uris: ['spiffe://evil.example/ns/shop/sa/web'] }), /trust domain "evil.example" is not ours/],
      ['no URI SAN', forgeLeaf(dir, { uris: [] }), /has no URI SAN/],
      ['two URI SANs', forgeLeaf(dir, { uris: [uri, 'spiffe://cluster.local/ns/shop/sa/cart'] }), /has 2 URI SANs/],
    ];
    for (const [name, forged, message] of cases) {
      const outcome = await attempt(await forged);
      assert.equal(outcome.serverPeer, undefined, `${name}: accepted`);
      assert.match(outcome.serverError ?? '', message, name);
    }
    assert.ok(caDirectorySigner(dir).chainPem.length === 1, 'the signer sends its intermediate');
  });
});

describe('root rotation', () => {
  test('old-root and new-root certificates meet while both roots are trusted, not after finishRotation', async (t) => {
    const ca = await MemoryCa.create({ trustDomain: TD, intermediate: true });
    // Two agents: A dials as `web`, B serves as `cart`.
    const a = agent(ca.client(), t);
    const b = agent(ca.client(), t);
    const refresh = async (): Promise<void> => {
      await Promise.all([a.certs.refreshTrustBundle(), b.certs.refreshTrustBundle()]);
    };
    await a.certs.fetch(client); // issued under root-1
    await ca.beginRotation();
    await refresh();
    await ca.switchIssuer();
    await b.certs.fetch(server); // issued under root-2
    assert.match(a.certs.get(client)!.issuer, /intermediate-1/);
    assert.match(b.certs.get(server)!.issuer, /intermediate-2/);
    const connect = (): Promise<Outcome> =>
      handshake(
        t,
        { context: b.tlsProvider.contexts(SERVER_PRINCIPAL)!.server, provider: b.tlsProvider },
        {
          context: a.tlsProvider.contexts('cluster.local/ns/shop/sa/web')!.client,
          check: a.tlsProvider.serverIdentityCheck(SERVER_PRINCIPAL),
        },
      );
    assert.equal((await connect()).serverPeer, 'cluster.local/ns/shop/sa/web', 'both roots trusted: old meets new');

    await ca.finishRotation();
    await refresh();
    const refused = await connect();
    assert.equal(refused.serverPeer, undefined, 'the old-root client is refused');
    assert.match(refused.serverError ?? '', /unable to get local issuer|unknown ca/i);

    // Re-issued from the new authority (what an agent does when the issuer switches), A is accepted again.
    await a.certs.renewAll('issuer switched');
    assert.equal((await connect()).serverPeer, 'cluster.local/ns/shop/sa/web');
  });
});
