// Tests for the agent's pod records (src/app/pod-netns-directory.ts): workloads of this node that arrive without a
// network namespace get the one the kubelet's `<uid>.json` names, when the record names the same pod and a
// namespace path; records that appear, change and vanish later are followed; hostile records are refused with a
// warning naming the file and field. Real files in a temporary directory; MemoryConfigSource as the source.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PodNetnsDirectory } from '../../src/app/pod-netns-directory';
import { ClusterState, MemoryConfigSource, type ConfigUpdate, type StateDelta, type Workload } from '../../src/state';
import { createRootLogger, type Logger } from '../../src/telemetry';
import { waitFor } from './config-harness';
import type { After } from './helpers';

const UID_A = '0b9a4a4e-5c1f-4f0e-9a39-3f1c0e6c2a01';
const UID_B = '7d2c9f10-0e5b-4a8e-b7f4-c2d61e0a9b02';

function workload(uid: string, name: string, extra: Partial<Workload> = {}): Workload {
  return {
    uid,
    namespace: 'shop',
    name,
    node: 'node-a',
    serviceAccount: 'web',
    ips: ['10.244.0.11'],
    labels: { app: 'web' },
    meshEnabled: true,
    netnsPath: '',
    excludeOutboundPorts: [],
    excludeOutboundCidrs: [],
    ...extra,
  };
}

/** A logger whose warnings a test reads back. */
function capturingLog(): { log: Logger; warnings: Array<Record<string, unknown>> } {
  const warnings: Array<Record<string, unknown>> = [];
  const stream = {
    write(line: string) {
      const entry = JSON.parse(line) as Record<string, unknown>;
      if (entry.level === 40) warnings.push(entry);
    },
  };
  return { log: createRootLogger('info', stream), warnings };
}

function fixture(t: After, intervalMs = 60_000) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-pod-records-'));
  fs.chmodSync(dir, 0o700);
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const inner = new MemoryConfigSource();
  const { log, warnings } = capturingLog();
  const records = new PodNetnsDirectory(inner, { dir, node: 'node-a', log, intervalMs });
  const state = new ClusterState();
  const applied: Array<{ delta: StateDelta; update: ConfigUpdate }> = [];
  records.start({
    apply(delta, update) {
      state.apply(delta, update.revision);
      applied.push({ delta: structuredClone(delta), update });
    },
  });
  t.after(() => records.stop());
  const write = (uid: string, record: Record<string, unknown>, mode = 0o600): string => {
    const file = path.join(dir, `${uid}.json`);
    const temporary = `${file}.tmp`;
    fs.writeFileSync(temporary, JSON.stringify(record), { mode });
    fs.chmodSync(temporary, mode);
    fs.renameSync(temporary, file);
    return file;
  };
  const netns = (uid: string): string | undefined => state.workload(uid)?.netnsPath;
  return { dir, inner, records, state, applied, warnings, write, netns };
}

test('a workload of this node takes the netnsPath of the record naming the same pod, before it reaches the state', (t) => {
  const f = fixture(t);
  f.write(UID_A, {
    uid: UID_A,
    namespace: 'shop',
    name: 'web-1',
    netnsPath: '/run/netns/ferry-pod-shop-web-1',
    cgroupDir: '/sys/fs/cgroup/x',
  });
  f.inner.push({
    workloads: {
      upsert: [
        workload(UID_A, 'web-1'),
        workload(UID_B, 'web-2', { node: 'node-b' }),
        workload('6f4f7a2c-1111-4a8e-b7f4-c2d61e0a9b03', 'own', { netnsPath: '/proc/42/ns/net' }),
      ],
    },
  });
  assert.equal(f.applied.length, 1, 'one delta, filled in place');
  assert.equal(f.netns(UID_A), '/run/netns/ferry-pod-shop-web-1');
  assert.equal(f.netns(UID_B), '', "another node's workload is not this agent's to fill");
  assert.equal(f.netns('6f4f7a2c-1111-4a8e-b7f4-c2d61e0a9b03'), '/proc/42/ns/net', 'a path of its own is kept');
  assert.equal(f.records.synced, true);
  assert.deepEqual(f.warnings, []);
});

test('a record that appears later, changes or vanishes is delivered as a delta of its own on the next check', async (t) => {
  const f = fixture(t, 20);
  f.inner.push({ workloads: { upsert: [workload(UID_A, 'web-1')] } });
  assert.equal(f.netns(UID_A), '');
  assert.deepEqual(f.records.waiting(), new Map([[UID_A, '']]));
  f.write(UID_A, { uid: UID_A, namespace: 'shop', name: 'web-1', netnsPath: '/run/netns/a' });
  await waitFor(() => f.netns(UID_A) === '/run/netns/a', 'the timer to find the record');
  const found = f.applied.at(-1)!;
  assert.deepEqual(
    found.delta.workloads?.upsert?.map((w) => [w.uid, w.netnsPath]),
    [[UID_A, '/run/netns/a']],
  );
  assert.equal(found.update.synced, true, 'synced as the source is, so the agent reconciles at once');
  const deltas = f.applied.length;
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(f.applied.length, deltas, 'an unchanged record delivers nothing');
  f.write(UID_A, { uid: UID_A, namespace: 'shop', name: 'web-1', netnsPath: '/run/netns/b' });
  await waitFor(() => f.netns(UID_A) === '/run/netns/b', 'the changed record');
  fs.rmSync(path.join(f.dir, `${UID_A}.json`));
  await waitFor(() => f.netns(UID_A) === '', 'the vanished record to take the path away');
  // A resync from the source with the same workload keeps what the records say.
  f.write(UID_A, { uid: UID_A, namespace: 'shop', name: 'web-1', netnsPath: '/run/netns/c' });
  f.inner.push({ workloads: { upsert: [workload(UID_A, 'web-1', { labels: { app: 'web', v: '2' } })] } });
  assert.equal(f.netns(UID_A), '/run/netns/c', 'a delta reads the record at once');
  assert.equal(f.state.workload(UID_A)?.labels.v, '2');
  f.inner.push({ workloads: { remove: [UID_A] } });
  assert.equal(f.state.workload(UID_A), undefined);
  assert.deepEqual(f.records.waiting(), new Map());
});

test('every delta re-checks the waiting workloads, not only its own', (t) => {
  const f = fixture(t);
  f.inner.push({ workloads: { upsert: [workload(UID_A, 'web-1')] } });
  f.write(UID_A, { uid: UID_A, namespace: 'shop', name: 'web-1', netnsPath: '/run/netns/a' });
  f.inner.push({ workloads: { upsert: [workload(UID_B, 'web-2')] } });
  assert.equal(f.netns(UID_A), '/run/netns/a');
  assert.equal(f.netns(UID_B), '');
});

test('records that name another pod, a path outside /run/netns and /proc, or are writable by others are refused', (t) => {
  const f = fixture(t);
  const cases: Array<{ record: Record<string, unknown>; field: string; mode?: number }> = [
    { record: { uid: UID_A, namespace: 'shop', name: 'web-2', netnsPath: '/run/netns/a' }, field: 'name' },
    { record: { uid: UID_A, namespace: 'other', name: 'web-1', netnsPath: '/run/netns/a' }, field: 'namespace' },
    { record: { uid: UID_B, namespace: 'shop', name: 'web-1', netnsPath: '/run/netns/a' }, field: 'uid' },
    { record: { uid: UID_A, namespace: 'shop', name: 'web-1', netnsPath: '/etc/passwd' }, field: 'netnsPath' },
    { record: { uid: UID_A, namespace: 'shop', name: 'web-1', netnsPath: '/run/netns/../../etc/x' }, field: 'netnsPath' },
    { record: { uid: UID_A, namespace: 'shop', name: 'web-1', netnsPath: '/proc/self/ns/net' }, field: 'netnsPath' },
    { record: { uid: UID_A, namespace: 'shop', name: 'web-1', netnsPath: 7 }, field: 'netnsPath' },
    { record: { uid: UID_A, namespace: 'shop', name: 'web-1', netnsPath: '/run/netns/a' }, field: 'file', mode: 0o666 },
  ];
  f.inner.push({ workloads: { upsert: [workload(UID_A, 'web-1')] } });
  for (const [i, { record, field, mode }] of cases.entries()) {
    const file = f.write(UID_A, record, mode);
    f.records.recheck();
    assert.equal(f.netns(UID_A), '', `case ${i} (${field}) must not be trusted`);
    const warning = f.warnings.at(-1);
    assert.equal(f.warnings.length, i + 1, `case ${i}: one warning`);
    assert.equal(warning?.file, file);
    assert.equal(warning?.field, field);
  }
  f.records.recheck();
  assert.equal(f.warnings.length, cases.length, 'an unchanged refused record is warned about once');
  fs.symlinkSync('/dev/null', path.join(f.dir, 'target'));
  fs.rmSync(path.join(f.dir, `${UID_A}.json`));
  fs.symlinkSync(path.join(f.dir, 'target'), path.join(f.dir, `${UID_A}.json`));
  f.records.recheck();
  assert.equal(f.warnings.at(-1)?.field, 'file', 'a symbolic link is never followed');
  // A good record after all that is taken.
  fs.rmSync(path.join(f.dir, `${UID_A}.json`));
  f.write(UID_A, { uid: UID_A, namespace: 'shop', name: 'web-1', netnsPath: '/proc/4242/ns/net' });
  f.records.recheck();
  assert.equal(f.netns(UID_A), '/proc/4242/ns/net');
});

test('a workload uid that cannot be a file name is never looked up', (t) => {
  const f = fixture(t);
  fs.mkdirSync(path.join(f.dir, 'shop'));
  fs.writeFileSync(
    path.join(f.dir, 'shop', 'web-1.json'),
    JSON.stringify({ uid: 'shop/web-1', namespace: 'shop', name: 'web-1', netnsPath: '/run/netns/a' }),
    { mode: 0o600 },
  );
  f.inner.push({ workloads: { upsert: [workload('shop/web-1', 'web-1'), workload('../x', 'x')] } });
  assert.equal(f.netns('shop/web-1'), '');
  assert.equal(f.netns('../x'), '');
  assert.deepEqual(
    f.warnings.map((w) => w.field),
    ['uid', 'uid'],
  );
});

test('stop: no delivery after it', async (t) => {
  const f = fixture(t, 10);
  f.inner.push({ workloads: { upsert: [workload(UID_A, 'web-1')] } });
  await f.records.stop();
  f.write(UID_A, { uid: UID_A, namespace: 'shop', name: 'web-1', netnsPath: '/run/netns/a' });
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.equal(f.netns(UID_A), '');
  assert.throws(() => f.inner.push({}), /before start \(or after stop\)/);
});
