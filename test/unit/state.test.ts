// Tests for src/state: Service VIP and pod IP resolution in ClusterState, policies in the snapshot and in
// ClusterState, snapshot validation, the atomic snapshot file and its watcher. Pure computation plus files in a temporary directory.
import { test, describe } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  ClusterState,
  SnapshotError,
  parseSnapshot,
  readSnapshot,
  watchSnapshot,
  writeSnapshot,
  type ClusterSnapshot,
  type Destination,
  type Service,
  type Workload,
} from '../../src/state';
import type { AuthorizationPolicy, PeerAuthentication } from '../../src/policy';

const VIP = '10.96.0.10';

function workload(name: string, ip: string, extra: Partial<Workload> = {}): Workload {
  return {
    uid: `shop/${name}`,
    namespace: 'shop',
    name,
    node: 'node-a',
    serviceAccount: 'default',
    ips: [ip],
    labels: { app: name },
    meshEnabled: true,
    netnsPath: `/run/netns/${name}`,
    excludeOutboundPorts: [],
    excludeOutboundCidrs: [],
    ...extra,
  };
}

function service(extra: Partial<Service> = {}): Service {
  return {
    namespace: 'shop',
    name: 'cart',
    hostname: 'cart.shop.svc.cluster.local',
    vips: [VIP],
    ports: [
      {
        name: 'http',
        port: 80,
        endpoints: [
          { ip: '10.244.0.11', port: 8080, workloadUid: 'shop/cart-1' },
          { ip: '10.244.0.12', port: 8080, workloadUid: 'shop/cart-2' },
          { ip: '10.244.1.13', port: 8080 },
        ],
      },
      { name: 'admin', port: 9000, endpoints: [] },
    ],
    ...extra,
  };
}

function snapshot(revision: number, extra: Partial<ClusterSnapshot> = {}): ClusterSnapshot {
  return {
    version: 1,
    revision,
    workloads: [
      workload('cart-1', '10.244.0.11'),
      workload('cart-2', '10.244.0.12'),
      workload('cart-3', '10.244.1.13', { node: 'node-b' }),
      workload('legacy', '10.244.0.20', { meshEnabled: false }),
    ],
    services: [service()],
    ...extra,
  };
}

function stateOf(snap: ClusterSnapshot): ClusterState {
  const state = new ClusterState();
  state.replace(snap);
  return state;
}

function endpointOf(destination: Destination): string {
  assert.equal(destination.kind, 'service', `expected a service destination, got ${destination.kind}`);
  if (destination.kind !== 'service') throw new Error('unreachable');
  return `${destination.endpoint.ip}:${destination.endpoint.port}`;
}

/** Resolves when `condition` holds, polling; rejects after `timeoutMs` with `what` in the message. */
async function waitFor(condition: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-state-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe('ClusterState.resolve', () => {
  test('a Service VIP picks its endpoints round robin, in order, and wraps', () => {
    const state = stateOf(snapshot(1));
    const picked = Array.from({ length: 7 }, () => endpointOf(state.resolve(VIP, 80)));
    assert.deepEqual(picked, [
      '10.244.0.11:8080',
      '10.244.0.12:8080',
      '10.244.1.13:8080',
      '10.244.0.11:8080',
      '10.244.0.12:8080',
      '10.244.1.13:8080',
      '10.244.0.11:8080',
    ]);
  });

  test('a service destination carries the Service, the port and the backing workload', () => {
    const state = stateOf(snapshot(1));
    const first = state.resolve(VIP, 80);
    assert.equal(first.kind, 'service');
    if (first.kind !== 'service') return;
    assert.equal(first.service.name, 'cart');
    assert.equal(first.port.port, 80);
    assert.equal(first.workload?.uid, 'shop/cart-1');
    state.resolve(VIP, 80);
    // The third endpoint names no workloadUid: it is found by its IP.
    const third = state.resolve(VIP, 80);
    assert.equal(third.kind, 'service');
    if (third.kind !== 'service') return;
    assert.equal(third.workload?.uid, 'shop/cart-3');
  });

  test('every VIP of a Service resolves, each with its own rotation', () => {
    const state = stateOf(snapshot(1, { services: [service({ vips: [VIP, 'fd00:96::10'] })] }));
    assert.equal(endpointOf(state.resolve(VIP, 80)), '10.244.0.11:8080');
    assert.equal(endpointOf(state.resolve('fd00:96::10', 80)), '10.244.0.11:8080');
    assert.equal(endpointOf(state.resolve(VIP, 80)), '10.244.0.12:8080');
  });

  test('the rotation is kept across replace', () => {
    const state = stateOf(snapshot(1));
    assert.equal(endpointOf(state.resolve(VIP, 80)), '10.244.0.11:8080');
    state.replace(snapshot(2));
    assert.equal(state.revision, 2);
    assert.equal(endpointOf(state.resolve(VIP, 80)), '10.244.0.12:8080');
    state.replace(snapshot(3));
    assert.equal(endpointOf(state.resolve(VIP, 80)), '10.244.1.13:8080');
    assert.equal(endpointOf(state.resolve(VIP, 80)), '10.244.0.11:8080');
  });

  test('the rotation stays within the endpoints when a replace shrinks them', () => {
    const state = stateOf(snapshot(1));
    state.resolve(VIP, 80);
    state.resolve(VIP, 80); // cursor now at the third endpoint
    const shrunk = service();
    shrunk.ports[0].endpoints = shrunk.ports[0].endpoints.slice(0, 2);
    state.replace(snapshot(2, { services: [shrunk] }));
    const picked = Array.from({ length: 4 }, () => endpointOf(state.resolve(VIP, 80)));
    for (const p of picked) assert.ok(['10.244.0.11:8080', '10.244.0.12:8080'].includes(p), p);
    assert.notEqual(picked[0], picked[1]);
  });

  test('a Service port without endpoints is no-endpoints', () => {
    const state = stateOf(snapshot(1));
    const destination = state.resolve(VIP, 9000);
    assert.equal(destination.kind, 'no-endpoints');
    if (destination.kind !== 'no-endpoints') return;
    assert.equal(destination.service.name, 'cart');
    assert.equal(destination.port.port, 9000);
  });

  test('a VIP on a port the Service does not declare passes through', () => {
    const state = stateOf(snapshot(1));
    assert.deepEqual(state.resolve(VIP, 443), { kind: 'passthrough', ip: VIP, port: 443 });
  });

  test('a port the Service does not declare on an address that is also a pod IP resolves the pod', () => {
    // Not a real cluster layout, but it pins the order: VIP:port first, then pod IP.
    const state = stateOf(snapshot(1, { services: [service({ vips: ['10.244.0.12'] })] }));
    assert.equal(endpointOf(state.resolve('10.244.0.12', 80)), '10.244.0.11:8080');
    const other = state.resolve('10.244.0.12', 443);
    assert.equal(other.kind, 'workload');
    if (other.kind === 'workload') assert.equal(other.workload.uid, 'shop/cart-2');
  });

  test('a pod IP resolves to its workload with the original port', () => {
    const state = stateOf(snapshot(1));
    const destination = state.resolve('10.244.1.13', 8080);
    assert.equal(destination.kind, 'workload');
    if (destination.kind !== 'workload') return;
    assert.equal(destination.workload.uid, 'shop/cart-3');
    assert.equal(destination.ip, '10.244.1.13');
    assert.equal(destination.port, 8080);
  });

  test('an unknown IP passes through unchanged', () => {
    const state = stateOf(snapshot(1));
    assert.deepEqual(state.resolve('192.0.2.7', 443), { kind: 'passthrough', ip: '192.0.2.7', port: 443 });
  });

  test('replace drops what the new snapshot no longer has', () => {
    const state = stateOf(snapshot(1));
    state.replace(snapshot(2, { workloads: [], services: [] }));
    assert.equal(state.resolve(VIP, 80).kind, 'passthrough');
    assert.equal(state.resolve('10.244.0.11', 8080).kind, 'passthrough');
    assert.equal(state.workload('shop/cart-1'), undefined);
  });

  test('an empty state resolves everything as passthrough', () => {
    const state = new ClusterState();
    assert.equal(state.revision, 0);
    assert.deepEqual(state.resolve(VIP, 80), { kind: 'passthrough', ip: VIP, port: 80 });
  });
});

describe('ClusterState lookups', () => {
  test('meshedWorkloadsOn filters by node and meshEnabled', () => {
    const state = stateOf(snapshot(1));
    assert.deepEqual(
      state.meshedWorkloadsOn('node-a').map((w) => w.uid),
      ['shop/cart-1', 'shop/cart-2'],
    );
    assert.deepEqual(
      state.meshedWorkloadsOn('node-b').map((w) => w.uid),
      ['shop/cart-3'],
    );
    assert.deepEqual(state.meshedWorkloadsOn('node-c'), []);
  });

  test('workloadByIp, workload and serviceByVip', () => {
    const state = stateOf(snapshot(1));
    assert.equal(state.workloadByIp('10.244.0.20')?.uid, 'shop/legacy');
    assert.equal(state.workload('shop/cart-2')?.ips[0], '10.244.0.12');
    assert.equal(state.serviceByVip(VIP, 80)?.service.name, 'cart');
    assert.equal(state.serviceByVip(VIP, 81), undefined);
  });
});

describe('policies in the snapshot', () => {
  const denyLegacy: AuthorizationPolicy = {
    namespace: 'shop',
    name: 'deny-legacy',
    action: 'DENY',
    dryRun: false,
    rules: [{ from: [{ namespaces: ['legacy'] }] }],
  };
  const strict: PeerAuthentication = { namespace: 'ferry-system', name: 'default', mode: 'STRICT', portLevelMtls: [] };
  const withPolicies = (
    revision: number,
    authorizationPolicies: AuthorizationPolicy[],
    peerAuthentications: PeerAuthentication[] = [],
  ): ClusterSnapshot => snapshot(revision, { authorizationPolicies, peerAuthentications });
  const CART = workload('cart-1', '10.244.0.11');
  const FROM_LEGACY = {
    source: { principal: 'spiffe://cluster.local/ns/legacy/sa/default', ip: '10.244.1.5' },
    destination: { ip: '10.244.0.11', port: 8080 },
  };

  test('ClusterState compiles them on replace', () => {
    const state = stateOf(withPolicies(1, [denyLegacy], [strict]));
    assert.equal(state.policies.authorize(CART, FROM_LEGACY).allow, false);
    assert.equal(state.policies.mtlsMode(CART, 8080), 'STRICT');
  });

  test('a snapshot without policies (or an empty state) allows everything, PERMISSIVE', () => {
    for (const state of [new ClusterState(), stateOf(snapshot(1))]) {
      assert.equal(state.policies.authorize(CART, FROM_LEGACY).allow, true);
      assert.equal(state.policies.mtlsMode(CART, 8080), 'PERMISSIVE');
      assert.equal(state.policyRevision, 0);
    }
  });

  test('policyRevision moves only when the policies change, and the PolicySet is kept otherwise', () => {
    const state = stateOf(withPolicies(1, [denyLegacy]));
    const first = state.policies;
    assert.equal(state.policyRevision, 1);
    state.replace(withPolicies(2, [structuredClone(denyLegacy)], []));
    assert.equal(state.policyRevision, 1, 'same policies in a new snapshot');
    assert.equal(state.policies, first);
    state.replace(withPolicies(3, [denyLegacy], [strict]));
    assert.equal(state.policyRevision, 2);
    assert.notEqual(state.policies.fingerprint, first.fingerprint);
    state.replace(snapshot(4));
    assert.equal(state.policyRevision, 3);
    assert.equal(state.policies.authorize(CART, FROM_LEGACY).allow, true);
  });

  test('a policy that cannot be compiled leaves the state as it was', () => {
    const state = stateOf(withPolicies(1, [denyLegacy]));
    const bad: AuthorizationPolicy = { ...denyLegacy, rules: [{ from: [{ ipBlocks: ['10.0.0.0/40'] }] }] };
    assert.throws(() => state.replace(withPolicies(2, [bad])), { code: 'FERRY_ERR_POLICY_INVALID' });
    assert.equal(state.revision, 1);
    assert.equal(state.policyRevision, 1);
  });

  test('the snapshot file carries them: parseSnapshot accepts and returns them', () => {
    const snap = withPolicies(
      3,
      [{ ...denyLegacy, selector: { app: 'cart' }, dryRun: true }],
      [strict, { namespace: 'shop', name: 'db', selector: { app: 'db' }, mode: 'UNSET', portLevelMtls: [{ port: 5432, mode: 'DISABLE' }] }],
    );
    assert.deepEqual(parseSnapshot(JSON.stringify(snap), 'snapshot.json'), snap);
  });

  test('parseSnapshot refuses malformed policies with their path, or values that cannot be compiled', () => {
    const shape = withPolicies(1, [{ ...denyLegacy, action: 'CUSTOM' as 'DENY', rules: [{ from: [{ principal: ['x'] } as never] }] }]);
    assert.throws(
      () => parseSnapshot(JSON.stringify(shape), 'snapshot.json'),
      (err: unknown) => {
        assert.ok(err instanceof SnapshotError);
        assert.match(err.message, /\/authorizationPolicies\/0\/action must be equal to one of the allowed values/);
        assert.match(err.message, /\/authorizationPolicies\/0\/rules\/0\/from\/0 must NOT have additional properties: "principal"/);
        return true;
      },
    );
    const value = withPolicies(1, [{ ...denyLegacy, rules: [{ when: [{ key: 'source.ip', values: ['nope'] }] }] }]);
    assert.throws(
      () => parseSnapshot(JSON.stringify(value), 'snapshot.json'),
      (err: unknown) => {
        assert.ok(err instanceof SnapshotError);
        assert.match(
          err.message,
          /^snapshot\.json: invalid snapshot: cannot compile authorization policies:\n {2}AuthorizationPolicy shop\/deny-legacy: spec\.rules\[0\]: "nope" is not an IPv4 or IPv6 address/,
        );
        return true;
      },
    );
  });
});

describe('parseSnapshot', () => {
  const SOURCE = '/var/run/ferry/snapshot.json';

  function problemsOf(value: unknown): string {
    const text = JSON.stringify(value);
    let caught: unknown;
    assert.throws(
      () => parseSnapshot(text, SOURCE),
      (err: unknown) => {
        caught = err;
        return true;
      },
    );
    assert.ok(caught instanceof SnapshotError, `expected SnapshotError, got ${String(caught)}`);
    assert.equal(caught.code, 'FERRY_ERR_STATE_SNAPSHOT');
    assert.equal(caught.name, 'SnapshotError');
    assert.ok(caught.message.startsWith(`${SOURCE}: `), `message does not name the source: ${caught.message}`);
    return caught.message;
  }

  test('accepts a valid snapshot and returns it unchanged', () => {
    const snap = snapshot(7);
    assert.deepEqual(parseSnapshot(JSON.stringify(snap), SOURCE), snap);
  });

  test('accepts an empty snapshot', () => {
    const empty: ClusterSnapshot = { version: 1, revision: 0, workloads: [], services: [] };
    assert.deepEqual(parseSnapshot(JSON.stringify(empty), SOURCE), empty);
  });

  test('a missing field is named with its object path', () => {
    const snap = snapshot(1) as unknown as { workloads: Array<Record<string, unknown>> };
    delete snap.workloads[2].node;
    const message = problemsOf(snap);
    assert.match(message, /\/workloads\/2 must have required property 'node'/);
  });

  test('a missing top-level field is named', () => {
    const { services: _omitted, ...rest } = snapshot(1);
    void _omitted;
    assert.match(problemsOf(rest), /\(root\) must have required property 'services'/);
  });

  test('a field of the wrong type is named with its path and the expected type', () => {
    const snap = snapshot(1) as unknown as { revision: unknown; workloads: Array<Record<string, unknown>> };
    snap.revision = 'seven';
    snap.workloads[0].meshEnabled = 'yes';
    const message = problemsOf(snap);
    assert.match(message, /\/revision must be integer/);
    assert.match(message, /\/workloads\/0\/meshEnabled must be boolean/);
  });

  test('a wrong version is refused', () => {
    assert.match(problemsOf({ ...snapshot(1), version: 2 }), /\/version must be equal to constant/);
  });

  test('ports out of range are named with their path', () => {
    const snap = snapshot(1);
    snap.services[0].ports[0].endpoints[1].port = 70000;
    snap.services[0].ports[1].port = 0;
    snap.workloads[0].excludeOutboundPorts = [22, 65536];
    const message = problemsOf(snap);
    assert.match(message, /\/services\/0\/ports\/0\/endpoints\/1\/port must be <= 65535/);
    assert.match(message, /\/services\/0\/ports\/1\/port must be >= 1/);
    assert.match(message, /\/workloads\/0\/excludeOutboundPorts\/1 must be <= 65535/);
  });

  test('an extra field is refused, naming the object that has it', () => {
    const snap = snapshot(1) as unknown as { services: Array<Record<string, unknown>> };
    snap.services[0].clusterIP = VIP;
    const message = problemsOf(snap);
    assert.match(message, /\/services\/0 must NOT have additional properties/);
  });

  test('an extra field is refused, naming the field itself', () => {
    // STYLE.md: "Bad input gets a message that names the object, the field path and what was expected".
    // In a document with hundreds of services the object path alone does not say which key to remove.
    const snap = snapshot(1) as unknown as { services: Array<Record<string, unknown>> };
    snap.services[0].clusterIP = VIP;
    const message = problemsOf(snap);
    assert.ok(message.includes('clusterIP'), `message does not name the extra field 'clusterIP':\n${message}`);
  });

  test('every problem is listed, not only the first', () => {
    const snap = snapshot(1) as unknown as { revision: unknown; services: Array<Record<string, unknown>> };
    snap.revision = -1;
    snap.services[0].hostname = 42;
    const message = problemsOf(snap);
    assert.match(message, /\/revision must be >= 0/);
    assert.match(message, /\/services\/0\/hostname must be string/);
  });

  test('invalid JSON is refused, naming the source', () => {
    assert.throws(
      () => parseSnapshot('{"version": 1,', SOURCE),
      (err: unknown) => {
        assert.ok(err instanceof SnapshotError);
        assert.ok(err.message.startsWith(`${SOURCE}: not valid JSON: `), err.message);
        assert.ok(err.cause instanceof SyntaxError);
        return true;
      },
    );
  });

  test('a JSON value that is not an object is refused', () => {
    assert.match(problemsOf([]), /\(root\) must be object/);
  });
});

describe('snapshot file', () => {
  test('writeSnapshot then readSnapshot round-trips, leaving no temporary file', (t) => {
    const dir = tempDir(t);
    const file = path.join(dir, 'snapshot.json');
    const snap = snapshot(4);
    writeSnapshot(file, snap);
    assert.deepEqual(readSnapshot(file), snap);
    assert.deepEqual(fs.readdirSync(dir), ['snapshot.json']);
  });

  test('writeSnapshot replaces the file by rename (a new inode), not by rewriting it in place', (t) => {
    const dir = tempDir(t);
    const file = path.join(dir, 'snapshot.json');
    writeSnapshot(file, snapshot(1));
    const before = fs.statSync(file).ino;
    // A reader holding the old file keeps seeing a whole old document.
    const held = fs.openSync(file, 'r');
    t.after(() => fs.closeSync(held));
    writeSnapshot(file, snapshot(2));
    assert.notEqual(fs.statSync(file).ino, before);
    assert.equal(JSON.parse(fs.readFileSync(held, 'utf8')).revision, 1);
    assert.equal(readSnapshot(file).revision, 2);
    assert.deepEqual(fs.readdirSync(dir), ['snapshot.json']);
  });

  test('readSnapshot of a missing file is a SnapshotError naming the file, with the cause', (t) => {
    const file = path.join(tempDir(t), 'absent.json');
    assert.throws(
      () => readSnapshot(file),
      (err: unknown) => {
        assert.ok(err instanceof SnapshotError);
        assert.ok(err.message.startsWith(`${file}: cannot read snapshot`), err.message);
        assert.equal((err.cause as NodeJS.ErrnoException).code, 'ENOENT');
        return true;
      },
    );
  });

  test('readSnapshot of a bad document names the file', (t) => {
    const file = path.join(tempDir(t), 'bad.json');
    fs.writeFileSync(file, JSON.stringify({ ...snapshot(1), revision: 'x' }));
    assert.throws(
      () => readSnapshot(file),
      (err: unknown) => {
        assert.ok(err instanceof SnapshotError);
        assert.ok(err.message.startsWith(`${file}: invalid snapshot`), err.message);
        assert.match(err.message, /\/revision must be integer/);
        return true;
      },
    );
  });
});

describe('watchSnapshot', () => {
  /** Several polling intervals (20 ms here): time for fs.watchFile to take its first stat. */
  const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 150));

  /**
   * Keeps every libuv threadpool thread busy for a while (pbkdf2 runs there), so that a
   * fs.watchFile started now takes its first stat only after the caller's next synchronous steps.
   * This makes a scheduling race deterministic; it does not change what the code under test does.
   */
  function occupyThreadpool(): Promise<unknown> {
    const threads = Number(process.env.UV_THREADPOOL_SIZE) || 4;
    return Promise.all(
      Array.from({ length: 2 * threads }, () => new Promise((resolve) => crypto.pbkdf2('ferry', 'salt', 200_000, 32, 'sha256', resolve))),
    );
  }

  for (const existing of [true, false]) {
    test(`a revision written just after watching starts is delivered (file ${existing ? 'present' : 'absent'} at start)`, async (t) => {
      // fs.watchFile takes its baseline stat asynchronously and only reports differences from it:
      // a file replaced (or created) after watchSnapshot's first read but before that stat is
      // the baseline, so no change is ever reported for it.
      const dir = tempDir(t);
      const file = path.join(dir, 'snapshot.json');
      if (existing) writeSnapshot(file, snapshot(1));
      const busy = occupyThreadpool();
      const seen: number[] = [];
      const errors: Error[] = [];
      const stop = watchSnapshot(
        file,
        (snap) => seen.push(snap.revision),
        (err) => errors.push(err),
        20,
      );
      t.after(stop);
      writeSnapshot(file, snapshot(2));
      await within(busy, 10_000, 'the threadpool work');
      await waitFor(() => seen.includes(2), 'revision 2', 1000).catch(() => undefined);
      assert.deepEqual(seen, existing ? [1, 2] : [2], 'revision 2 was never delivered');
      assert.deepEqual(errors, []);
    });
  }

  test('calls back with each new revision; a bad document is reported and the previous one stays', async (t) => {
    const dir = tempDir(t);
    const file = path.join(dir, 'snapshot.json');
    writeSnapshot(file, snapshot(1));

    const state = new ClusterState();
    const seen: number[] = [];
    const errors: Error[] = [];
    const stop = watchSnapshot(
      file,
      (snap) => {
        seen.push(snap.revision);
        state.replace(snap);
      },
      (err) => errors.push(err),
      20,
    );
    t.after(stop);

    // The current document is delivered at once.
    assert.deepEqual(seen, [1]);
    assert.equal(state.revision, 1);

    // Let the poller take its first stat (a write before that is the race tested further down).
    await settle();
    writeSnapshot(file, snapshot(2));
    await waitFor(() => seen.length === 2, 'revision 2');
    assert.deepEqual(seen, [1, 2]);
    assert.equal(state.revision, 2);

    // A broken document (written atomically too, as the sandbox would).
    const broken = `${file}.broken`;
    fs.writeFileSync(broken, '{"version": 1, "revision": 3, "workloads": [');
    fs.renameSync(broken, file);
    await waitFor(() => errors.length >= 1, 'the bad document to be reported');
    assert.ok(errors[0] instanceof SnapshotError, String(errors[0]));
    assert.ok(errors[0].message.includes(file), errors[0].message);
    assert.deepEqual(seen, [1, 2]);
    assert.equal(state.revision, 2);
    assert.equal(endpointOf(state.resolve(VIP, 80)), '10.244.0.11:8080');

    // A document that parses but has the wrong shape is reported too.
    writeSnapshot(file, { ...snapshot(3), services: [service({ hostname: 7 as unknown as string })] });
    await waitFor(() => errors.length >= 2, 'the invalid document to be reported');
    assert.match(errors[1].message, /\/services\/0\/hostname must be string/);
    assert.equal(state.revision, 2);

    writeSnapshot(file, snapshot(4));
    await waitFor(() => seen.length === 3, 'revision 4');
    assert.deepEqual(seen, [1, 2, 4]);
    assert.equal(state.revision, 4);
  });

  test('a rewrite with the same revision is not delivered again', async (t) => {
    const dir = tempDir(t);
    const file = path.join(dir, 'snapshot.json');
    writeSnapshot(file, snapshot(5));
    const seen: number[] = [];
    const errors: Error[] = [];
    const stop = watchSnapshot(
      file,
      (snap) => seen.push(snap.revision),
      (err) => errors.push(err),
      20,
    );
    t.after(stop);
    await settle();
    writeSnapshot(file, snapshot(5, { services: [] }));
    writeSnapshot(file, snapshot(6));
    await waitFor(() => seen.includes(6), 'revision 6');
    assert.deepEqual(seen, [5, 6]);
    assert.deepEqual(errors, []);
  });

  test('a file that does not exist yet is picked up when it appears', async (t) => {
    const dir = tempDir(t);
    const file = path.join(dir, 'later.json');
    const seen: number[] = [];
    const errors: Error[] = [];
    const stop = watchSnapshot(
      file,
      (snap) => seen.push(snap.revision),
      (err) => errors.push(err),
      20,
    );
    t.after(stop);
    assert.deepEqual(seen, []);
    await settle();
    writeSnapshot(file, snapshot(1));
    await waitFor(() => seen.length === 1, 'the file to appear');
    assert.deepEqual(seen, [1]);
    assert.deepEqual(errors, []);
  });

  test('the returned function stops the callbacks', async (t) => {
    const dir = tempDir(t);
    const file = path.join(dir, 'snapshot.json');
    writeSnapshot(file, snapshot(1));
    const seen: number[] = [];
    const stop = watchSnapshot(
      file,
      (snap) => seen.push(snap.revision),
      () => undefined,
      20,
    );
    stop();
    t.after(stop);
    writeSnapshot(file, snapshot(2));
    // Several polling intervals: a live watcher would have seen revision 2 by now.
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual(seen, [1]);
  });
});
