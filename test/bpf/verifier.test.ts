// Every BPF object Ferry builds loads into this machine's kernel: the verifier accepts each
// program, and the objects share their maps through pins (a second load reuses them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as native from '../../src/native';
import { MAP_NAMES, encodeU32, encodeConfig } from '../../src/capture/bpf-layout';

const BPF_BUILD = path.resolve(__dirname, '..', '..', '..', 'bpf', 'build');
const OBJECTS: Record<string, string[]> = {
  'connect.bpf.o': ['ferry_connect4', 'ferry_connect6'],
  'sock-ops.bpf.o': ['ferry_sock_ops'],
  'sk-lookup.bpf.o': ['ferry_sk_lookup'],
};

test('each object passes the verifier and pins its maps once for all three', async (t) => {
  assert.equal(process.getuid?.(), 0, 'loading BPF programs needs root');
  const pinRoot = `/sys/fs/bpf/ferrytest-verifier-${crypto.randomBytes(4).toString('hex')}`;
  const loaded: native.BpfObject[] = [];
  t.after(() => {
    for (const o of loaded) o.close();
    fs.rmSync(pinRoot, { recursive: true, force: true });
  });
  for (const [file, programs] of Object.entries(OBJECTS)) {
    const object = await native.loadObject(path.join(BPF_BUILD, file), pinRoot);
    loaded.push(object);
    assert.deepEqual([...object.programs].sort(), [...programs].sort(), `${file} programs`);
    assert.deepEqual([...object.maps].sort(), Object.values(MAP_NAMES).sort(), `${file} maps`);
  }
  assert.deepEqual(fs.readdirSync(pinRoot).sort(), Object.values(MAP_NAMES).sort());
  // One instance per map: a value written through one object is seen through another.
  loaded[0].map(MAP_NAMES.config).update(encodeU32(0), encodeConfig(1, 4242n), 0);
  assert.deepEqual(loaded[2].map(MAP_NAMES.config).lookup(encodeU32(0)), encodeConfig(1, 4242n));
  assert.equal(loaded[0].map(MAP_NAMES.pods).info.id, loaded[1].map(MAP_NAMES.pods).info.id);
});
