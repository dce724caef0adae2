// Tests for the controller's serving certificate (src/controller/serving-certificate.ts) on a real grpc-js server
// over TLS on 127.0.0.1: the port keeps listening while the certificate is re-issued at half its lifetime, and a
// root rotation's switch re-issues it from the new authority, which a client trusting only the new root accepts.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { CaHolder, ServingCertificate } from '../../src/controller';
import { createRootLogger } from '../../src/telemetry';
import { MemoryCa } from '../fixtures/memory-ca';

const SERVER_NAME = 'ferry-controller.ferry-system.svc';
const IDENTITY = { trustDomain: 'cluster.local', namespace: 'ferry-system', serviceAccount: 'ferry-controller' };

interface Seen {
  serial: string;
  issuer: string;
  san: string;
}

async function serve(
  t: { after: (fn: () => void | Promise<void>) => void },
  ttlSeconds: number,
): Promise<{ ca: MemoryCa; holder: CaHolder; serving: ServingCertificate; port: number }> {
  const ca = await MemoryCa.create({ trustDomain: 'cluster.local', intermediate: true });
  const holder = new CaHolder('test CA', 'cluster.local');
  await holder.load(ca.caFiles());
  const serving = await ServingCertificate.start({
    ca: holder,
    identity: IDENTITY,
    dnsNames: [SERVER_NAME],
    ttlSeconds,
    log: createRootLogger('silent'),
  });
  t.after(() => serving.close());
  const server = new grpc.Server();
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.experimental.createCertificateProviderServerCredentials(serving, null, false), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  t.after(() => new Promise<void>((resolve) => server.tryShutdown(() => resolve())));
  return { ca, holder, serving, port };
}

/** A TLS handshake as an agent makes it (the server name, ALPN h2, these roots only): the leaf it was shown. */
function handshake(port: number, roots: string[]): Promise<Seen> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: SERVER_NAME, ca: roots, ALPNProtocols: ['h2'] }, () => {
      const cert = socket.getPeerX509Certificate();
      socket.destroy();
      if (!cert) return reject(new Error('no peer certificate'));
      resolve({ serial: cert.serialNumber, issuer: cert.issuer, san: cert.subjectAltName ?? '' });
    });
    socket.once('error', reject);
    socket.setTimeout(5000, () => socket.destroy(new Error('handshake timed out')));
  });
}

async function roots(ca: MemoryCa): Promise<string[]> {
  return ca.client().trustBundle();
}

test('re-issued at half its lifetime while the port keeps serving', async (t) => {
  const { ca, serving, port } = await serve(t, 4);
  const first = await handshake(port, await roots(ca));
  assert.equal(first.san, `URI:spiffe://cluster.local/ns/ferry-system/sa/ferry-controller, DNS:${SERVER_NAME}`);
  assert.equal(serving.stats().issued, 1);
  const deadline = Date.now() + 8000;
  let next = first;
  while (next.serial === first.serial && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    next = await handshake(port, await roots(ca));
  }
  assert.notEqual(next.serial, first.serial, 'the certificate was not re-issued within 8 s of a 4 s lifetime');
  assert.ok(serving.stats().issued >= 2);
  assert.ok(new Date(serving.stats().notAfter ?? 0).getTime() > Date.now());
});

test("a rotation's switch re-issues it from the new authority; a client trusting only the new root accepts it", async (t) => {
  const { ca, holder, serving, port } = await serve(t, 3600);
  const oldRoots = await roots(ca);
  const before = await handshake(port, oldRoots);
  assert.match(before.issuer, /intermediate-1/);

  await ca.beginRotation();
  await holder.load(ca.caFiles());
  assert.equal((await handshake(port, oldRoots)).serial, before.serial, 'a new trusted root alone changes nothing');
  assert.equal(serving.stats().issued, 1);

  await ca.switchIssuer();
  await holder.load(ca.caFiles());
  const deadline = Date.now() + 5000;
  while (serving.stats().issued < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  await ca.finishRotation();
  await holder.load(ca.caFiles());
  const newRoots = await roots(ca);
  assert.equal(newRoots.length, 1);
  const after = await handshake(port, newRoots);
  assert.notEqual(after.serial, before.serial);
  assert.match(after.issuer, /intermediate-2/);
  await assert.rejects(
    (async () => {
      // The old root alone no longer verifies the controller.
      await handshake(
        port,
        oldRoots.filter((pem) => !newRoots.includes(pem)),
      );
    })(),
    /unable to get local issuer|unable to verify/i,
  );
});
