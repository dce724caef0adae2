// Tests for src/identity workload-certificates.ts: issue, renewal at half-life with jitter, capped
// backoff, keeping a certificate through failed renewals, renewAll, and that the key never leaks.
// Fakes: a fake clock/timer set (so hours pass instantly) and, where the CA must fail, a
// CertificateAuthorityClient wrapping a real CertificateAuthority behind a switch.
import { test, describe } from 'node:test';
import * as assert from 'node:assert/strict';
import * as util from 'node:util';
import {
  BACKOFF_CAP_MS,
  CertificateAuthority,
  IdentityError,
  WorkloadCertificate,
  WorkloadCertificates,
  type CertificateAuthorityClient,
  type CertificateEvent,
  type SignRequest,
  type SignResponse,
  type SpiffeId,
  type Timers,
} from '../../src/identity';
import { createRootLogger, type Logger } from '../../src/telemetry';
import { forgeCertificate } from '../fixtures/certs';
import { within } from './helpers';

const TD = 'cluster.local';
const cart: SpiffeId = { trustDomain: TD, namespace: 'shop', serviceAccount: 'cart' };
const web: SpiffeId = { trustDomain: TD, namespace: 'shop', serviceAccount: 'web' };

/** Fake clock and timers: nothing runs until the test says so (runNext). */
class FakeTimers implements Timers {
  // A whole second: X.509 times have second precision, so lifetimes come out exact.
  #now = Math.floor(Date.now() / 1000) * 1000;
  #id = 0;
  readonly pending = new Map<number, { at: number; ms: number; fn: () => void }>();
  readonly #waiters: Array<(ms: number) => void> = [];
  now = (): number => this.#now;
  setTimeout = (fn: () => void, ms: number): unknown => {
    this.#id += 1;
    this.pending.set(this.#id, { at: this.#now + ms, ms, fn });
    this.#waiters.shift()?.(ms);
    return this.#id;
  };
  clearTimeout = (handle: unknown): void => {
    this.pending.delete(handle as number);
  };
  /** Resolves with the delay of the next setTimeout call. */
  nextSchedule(): Promise<number> {
    return within(new Promise<number>((resolve) => this.#waiters.push(resolve)), 5000, 'a timer to be scheduled');
  }
  /** Pending delays, soonest first. */
  delays(): number[] {
    return [...this.pending.values()].map((p) => p.at - this.#now).sort((a, b) => a - b);
  }
  /** Move the clock to the soonest timer and run it; returns the time it ran at. */
  runNext(): number {
    const [id, next] = [...this.pending.entries()].sort((a, b) => a[1].at - b[1].at)[0];
    this.pending.delete(id);
    this.#now = Math.max(this.#now, next.at);
    next.fn();
    return this.#now;
  }
}

/** A real CA (on the fake clock) whose sign() can be switched to fail. */
class SwitchableCa implements CertificateAuthorityClient {
  failing = false;
  signCalls = 0;
  constructor(readonly ca: CertificateAuthority) {}
  sign(request: SignRequest): Promise<SignResponse> {
    this.signCalls += 1;
    return this.failing ? Promise.reject(new Error('CA unavailable (test)')) : this.ca.sign(request);
  }
  trustBundle(): Promise<string[]> {
    return this.ca.trustBundle();
  }
}

function captureLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return {
    log: createRootLogger('debug', {
      write: (line: string) => {
        lines.push(line);
      },
    }),
    lines,
  };
}

async function setup(options: { ttlSeconds: number; random?: number; intermediate?: boolean }) {
  const timers = new FakeTimers();
  const ca = new SwitchableCa(
    await CertificateAuthority.generate({ trustDomain: TD, intermediate: options.intermediate, now: timers.now }),
  );
  const { log, lines } = captureLogger();
  const certs = new WorkloadCertificates({
    ca,
    trustDomain: TD,
    ttlSeconds: options.ttlSeconds,
    log,
    timers,
    random: () => options.random ?? 0.5,
  });
  const events: CertificateEvent[] = [];
  const waiters: Array<[string, (e: CertificateEvent) => void]> = [];
  certs.onChange((e) => {
    events.push(e);
    const i = waiters.findIndex(([type]) => type === e.type);
    if (i !== -1) waiters.splice(i, 1)[0][1](e);
  });
  const next = (type: CertificateEvent['type']): Promise<CertificateEvent> =>
    within(new Promise((resolve) => waiters.push([type, resolve])), 5000, `a "${type}" event`);
  return { timers, ca, certs, events, next, lines };
}

describe('WorkloadCertificates', () => {
  test('fetch issues once (concurrent fetches share it), validates the chain and caches it', async () => {
    const { certs, ca, events } = await setup({ ttlSeconds: 3600, intermediate: true });
    const [a, b] = await Promise.all([certs.fetch(cart), certs.fetch(cart)]);
    assert.equal(a, b);
    assert.equal(ca.signCalls, 1);
    assert.equal(await certs.fetch(cart), a, 'cached');
    assert.equal(a.principal, 'cluster.local/ns/shop/sa/cart');
    assert.equal(a.chainPem.length, 2);
    assert.equal(a.notAfter.getTime() - a.notBefore.getTime(), 3600_000 + 60_000, 'ttl plus the 60 s backdating');
    assert.match(a.fingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    assert.equal(certs.trustBundle().length, 1, 'the bundle was loaded before the first issue');
    assert.deepEqual(
      events.map((e) => e.type),
      ['bundle', 'issued'],
    );
    certs.forget(cart);
    assert.equal(certs.get(cart), undefined);
    assert.equal(events.at(-1)!.type, 'forgotten');
    await assert.rejects(certs.fetch({ ...cart, trustDomain: 'other.td' }), /trust domain "other.td" is not this agent's "cluster.local"/);
    certs.close();
  });

  test('a CA answer for another key or another identity is refused', async () => {
    const timers = new FakeTimers();
    const real = await CertificateAuthority.generate({ trustDomain: TD });
    const { log } = captureLogger();
    // A CA that answers every CSR with a certificate for `web` (another identity and another key).
    const wrong: CertificateAuthorityClient = {
      trustBundle: () => real.trustBundle(),
      sign: async () => {
        const other = new WorkloadCertificates({ ca: real, trustDomain: TD, log, timers: new FakeTimers() });
        const issued = await other.fetch(web);
        other.close();
        return { chainPem: [...issued.chainPem] };
      },
    };
    const certs = new WorkloadCertificates({ ca: wrong, trustDomain: TD, log, timers });
    await assert.rejects(
      certs.fetch(cart),
      /CA answer for spiffe:\/\/cluster.local\/ns\/shop\/sa\/cart: the leaf certifies a different public key/,
    );
    certs.close();
  });

  for (const [random, fraction] of [
    [0, 0.45],
    [0.5, 0.5],
    [0.99999, 0.55],
  ] as const) {
    test(`renews at half-life with jitter (random ${random} → ${fraction} of the lifetime)`, async () => {
      const { certs, timers, next } = await setup({ ttlSeconds: 3600, random });
      const first = await certs.fetch(cart);
      const [renewIn, expiresIn] = timers.delays();
      assert.ok(Math.abs(renewIn - fraction * 3600_000) < 100, `renewal in ${renewIn} ms`);
      assert.equal(expiresIn, 3600_000);
      const renewed = next('renewed');
      timers.runNext();
      const event = await renewed;
      assert.ok(event.type === 'renewed' && event.certificate !== first);
      const second = certs.get(cart)!;
      assert.notEqual(second.serial, first.serial);
      assert.notEqual(second.fingerprint, first.fingerprint);
      assert.equal(timers.pending.size, 2, 'the old expiry timer was replaced');
      certs.close();
      assert.equal(timers.pending.size, 0, 'close clears every timer');
    });
  }

  for (const [random, expected] of [
    [0.5, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]],
    [0.99999, [1200, 2400, 4800, 9600, 19200, 30000, 30000, 30000]],
    [0, [800, 1600, 3200, 6400, 12800, 24000, 24000, 24000]],
  ] as const) {
    test(`a failing CA is retried with capped exponential backoff (random ${random})`, async () => {
      const { certs, timers, ca, next } = await setup({ ttlSeconds: 3600, random });
      ca.failing = true;
      await assert.rejects(certs.fetch(cart), (err: unknown) => {
        assert.ok(err instanceof IdentityError);
        assert.equal(err.code, 'FERRY_ERR_IDENTITY_CERTIFICATE');
        assert.match(err.message, /certificate for cluster.local\/ns\/shop\/sa\/cart \(initial\): CA unavailable/);
        return true;
      });
      const delays = [Math.round(timers.delays()[0])];
      while (delays.length < expected.length) {
        const scheduled = timers.nextSchedule();
        timers.runNext();
        delays.push(Math.round(await scheduled));
      }
      assert.deepEqual(delays, expected);
      assert.ok(delays.every((d) => d <= BACKOFF_CAP_MS));
      assert.equal(ca.signCalls, expected.length);
      // Recovery resets the backoff and reports the certificate.
      ca.failing = false;
      const issued = next('issued');
      timers.runNext();
      await issued;
      assert.ok(certs.get(cart));
      certs.close();
    });
  }

  test('a failed renewal keeps the old certificate until it expires, retrying before expiry', async () => {
    const { certs, timers, ca, next, lines } = await setup({ ttlSeconds: 100 });
    const first = await certs.fetch(cart);
    ca.failing = true;
    let expired = false;
    certs.onChange((e) => {
      if (e.type === 'expired') expired = true;
    });
    let retries = 0;
    while (!expired) {
      const scheduled = timers.nextSchedule();
      const at = timers.runNext();
      if (expired) break;
      const delay = await scheduled;
      retries += 1;
      const remaining = first.notAfter.getTime() - at;
      assert.equal(certs.get(cart), first, 'still served while valid');
      assert.ok(delay <= Math.max(remaining / 2, 1000), `retry in ${delay} ms with ${remaining} ms left`);
    }
    assert.ok(retries >= 6, `${retries} retries`);
    assert.equal(certs.get(cart), undefined, 'dropped at notAfter');
    assert.ok(lines.some((l) => l.includes('"certificate expired without renewal"')));
    // Retrying goes on after expiry; the CA coming back brings the identity back.
    ca.failing = false;
    const issued = next('issued');
    timers.runNext();
    await issued;
    assert.ok(certs.get(cart));
    certs.close();
  });

  test('renewAll re-issues every certificate now', async () => {
    const { certs, events } = await setup({ ttlSeconds: 3600 });
    const before = [await certs.fetch(cart), await certs.fetch(web)].map((c) => c.serial);
    await certs.renewAll('CA issuer switched');
    const after = [certs.get(cart)!, certs.get(web)!].map((c) => c.serial);
    assert.notEqual(after[0], before[0]);
    assert.notEqual(after[1], before[1]);
    assert.equal(events.filter((e) => e.type === 'renewed').length, 2);
    certs.close();
  });

  test('setTrustBundle reports a change only when the roots differ', async () => {
    const { certs, events, ca } = await setup({ ttlSeconds: 3600 });
    await certs.refreshTrustBundle();
    await certs.refreshTrustBundle();
    assert.equal(events.filter((e) => e.type === 'bundle').length, 1);
    const other = await CertificateAuthority.generate({ trustDomain: TD });
    certs.setTrustBundle([...(await ca.trustBundle()), ...(await other.trustBundle())]);
    assert.equal(events.filter((e) => e.type === 'bundle').length, 2);
    assert.equal(certs.trustBundle().length, 2);
    assert.throws(() => certs.setTrustBundle(['junk']), /trust bundle root 0: not a PEM certificate/);
    certs.close();
  });

  test('renews on real timers at about half of a 3 s lifetime', async () => {
    const { log } = captureLogger();
    const certs = new WorkloadCertificates({
      ca: await CertificateAuthority.generate({ trustDomain: TD }),
      trustDomain: TD,
      ttlSeconds: 3,
      log,
    });
    const renewed = new Promise<number>((resolve) =>
      certs.onChange((e) => {
        if (e.type === 'renewed') resolve(Date.now());
      }),
    );
    const first = await certs.fetch(cart);
    const received = Date.now();
    // X.509 times have second precision, so the lifetime left is between 2 and 3 s.
    const lifetime = first.notAfter.getTime() - received;
    const at = await within(renewed, 4000, 'a renewal');
    certs.close();
    const after = at - received;
    assert.ok(after >= 0.45 * lifetime - 50 && after <= 0.55 * lifetime + 250, `renewed after ${after} ms of ${lifetime} ms`);
  });
});

describe('WorkloadCertificate never reveals its private key', () => {
  test('JSON, util.inspect, structuredClone, property lists and pino logs leave the key out', async () => {
    const forged = await forgeCertificate(undefined, { uris: ['spiffe://cluster.local/ns/shop/sa/cart'] });
    const cert = new WorkloadCertificate(cart, forged.chainPem, forged.keyPem);
    const keyBody = forged.keyPem
      .split('\n')
      .filter((l) => l && !l.startsWith('-----'))
      .join('');
    const leaks = (text: string): boolean =>
      text.includes('PRIVATE KEY') || text.includes(keyBody.slice(0, 32)) || text.includes(keyBody.slice(-32));
    const { log, lines } = captureLogger();
    log.info({ cert }, 'as a field');
    log.info(cert as unknown as object, 'as the object');
    log.info({ certs: [cert], nested: { cert } }, 'nested');
    const outputs: Record<string, string> = {
      json: JSON.stringify(cert),
      inspect: util.inspect(cert),
      inspectHidden: util.inspect(cert, { showHidden: true, depth: Infinity }),
      inspectRaw: util.inspect(cert, { showHidden: true, depth: Infinity, customInspect: false }),
      format: util.format('%o %O %j', cert, cert, cert),
      clone: JSON.stringify(structuredClone(cert)),
      names: Reflect.ownKeys(cert).map(String).join(','),
      pino: lines.join(''),
    };
    for (const [how, text] of Object.entries(outputs)) assert.ok(!leaks(text), `${how} leaks the key:\n${text}`);
    assert.match(outputs.inspect, /key: '\[redacted\]'/);
    assert.match(outputs.json, /"principal":"cluster.local\/ns\/shop\/sa\/cart"/);
    assert.equal(lines.length, 3);
    // The key is still there, for secureContext only.
    assert.ok(cert.secureContext({ minVersion: 'TLSv1.3' }));
  });

  test('issuing through WorkloadCertificates logs no key material', async () => {
    const { certs, lines, timers } = await setup({ ttlSeconds: 60 });
    await certs.fetch(cart);
    timers.runNext();
    await certs.renewAll('test');
    assert.ok(lines.length >= 3);
    assert.ok(!lines.join('').includes('PRIVATE KEY'));
    certs.close();
  });
});
