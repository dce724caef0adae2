// Tests for the pod index behind the CA's node check (src/controller pod-directory.ts PodIndex): which pods
// count for their node from binding to termination, moves, deletions. The informer is tested in test/k8s.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { PodIndex } from '../../src/controller/pod-directory';
import { pod } from './ca-harness';

const on = (index: PodIndex, node: string): string[] =>
  [...index.podsOnNode(node)].map((p) => `${p.namespace}/${p.serviceAccount}/${p.name}`).sort();

test('pods count for their node from binding until they terminate', () => {
  const index = new PodIndex();
  const web = pod({ namespace: 'shop', serviceAccount: 'web', name: 'web-1' });
  index.upsert(web); // not scheduled yet
  assert.deepEqual(on(index, 'node-a'), []);
  index.upsert({ ...web, spec: { ...web.spec!, nodeName: 'node-a' }, status: { phase: 'Pending' } });
  assert.deepEqual(on(index, 'node-a'), ['shop/web/web-1'], 'a pending pod needs its certificate before it starts');
  index.upsert(pod({ namespace: 'shop', serviceAccount: 'db', node: 'node-b', name: 'db-1' }));
  const deleting = { ...web, metadata: { ...web.metadata!, deletionTimestamp: new Date() }, spec: { ...web.spec!, nodeName: 'node-a' } };
  index.upsert(deleting);
  assert.deepEqual(on(index, 'node-a'), ['shop/web/web-1'], 'a pod being deleted still drains');
  index.upsert({ ...deleting, status: { phase: 'Succeeded' } });
  assert.deepEqual(on(index, 'node-a'), [], 'a Succeeded pod never runs again');
  assert.deepEqual(on(index, 'node-b'), ['shop/db/db-1']);
  index.upsert(pod({ namespace: 'shop', serviceAccount: 'db', node: 'node-b', name: 'db-2', phase: 'Failed' }));
  assert.deepEqual(on(index, 'node-b'), ['shop/db/db-1']);
  assert.equal(index.size, 1);
});

test('a pod that names no service account runs as "default"; deletions and changed nodes are followed by UID', () => {
  const index = new PodIndex();
  const p = pod({ namespace: 'ns', serviceAccount: '', node: 'node-a', name: 'p' });
  index.upsert(p);
  assert.deepEqual(on(index, 'node-a'), ['ns/default/p']);
  // A recreated pod of the same name is another UID; the old one's deletion must not remove it.
  const again = pod({ namespace: 'ns', serviceAccount: 'sa', node: 'node-c', name: 'p' });
  index.upsert(again);
  index.remove(p);
  assert.deepEqual(on(index, 'node-a'), []);
  assert.deepEqual(on(index, 'node-c'), ['ns/sa/p']);
  index.upsert({ ...again, spec: { ...again.spec!, nodeName: 'node-d' } });
  assert.deepEqual([on(index, 'node-c'), on(index, 'node-d')], [[], ['ns/sa/p']]);
  index.upsert({ ...again, metadata: { ...again.metadata!, uid: undefined } });
  assert.equal(index.size, 1, 'an object without a UID is ignored');
});
