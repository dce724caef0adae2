// loadObject, BpfMap and BpfLink against the real kernel, with a fixture object compiled here:
// pinning and reuse under a unique bpffs dir, map calls, cgroup and netns attachment checked with
// bpftool, verifier rejections. Root-only: fails when not root.
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { after, before, describe, test } from 'node:test';

import {
  BPF_EXIST,
  BPF_NOEXIST,
  NativeArgumentError,
  type BpfObject,
  fdOf,
  isNativeError,
  loadObject,
  openPinnedLink,
  openPinnedMap,
  socketCookie,
} from '../../src/native';
import { loadBinding } from '../../src/native/binding';
import { assertRoot, cgroup2Mount, compileFixture, createNetns, ensureBpffs, run, type TestNetns, u32, u64, uniqueName } from './helpers';

// include/uapi/linux/bpf.h
const BPF_MAP_TYPE_HASH = 1;
const BPF_MAP_TYPE_SOCKHASH = 18;
const BPF_LINK_TYPE_CGROUP = 3;
const BPF_LINK_TYPE_NETNS = 5;

interface CgroupProgram {
  id: number;
  name: string;
}

/** Programs attached to a cgroup directory, as bpftool sees them (it prints nothing when none). */
function cgroupPrograms(cgroupPath: string): CgroupProgram[] {
  const out = run('bpftool', ['-j', 'cgroup', 'show', cgroupPath]).trim();
  return out === '' ? [] : (JSON.parse(out) as CgroupProgram[]);
}

interface LinkEntry {
  id: number;
  type: string;
  prog_id: number;
  netns_ino?: number;
}

function kernelLinks(): LinkEntry[] {
  const out = run('bpftool', ['-j', 'link', 'show']).trim();
  return out === '' ? [] : (JSON.parse(out) as LinkEntry[]);
}

let workDir = '';
let fixturePath = '';
let rejectPath = '';
let pinRoot = '';
let cgroupDir = '';
let netns: TestNetns | undefined;
let object: BpfObject | undefined;
const cleanups: Array<() => void> = [];

before(async () => {
  assertRoot();
  ensureBpffs();
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrytest-native-'));
  fixturePath = compileFixture('fixture', workDir);
  rejectPath = compileFixture('reject', workDir);
  pinRoot = `/sys/fs/bpf/${uniqueName()}`;
  cgroupDir = path.join(cgroup2Mount(), uniqueName());
  fs.mkdirSync(cgroupDir);
  netns = createNetns();
  object = await loadObject(fixturePath, pinRoot);
});

after(() => {
  for (const cleanup of cleanups.reverse()) {
    try {
      cleanup();
    } catch {
      // keep cleaning
    }
  }
  object?.close();
  // Exact names only: never a glob, never the root cgroup or all of /sys/fs/bpf.
  if (pinRoot) fs.rmSync(pinRoot, { recursive: true, force: true });
  if (cgroupDir) fs.rmdirSync(cgroupDir);
  netns?.remove();
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
});

function loaded(): BpfObject {
  assert.ok(object, 'fixture object not loaded');
  return object;
}

describe('loadObject', () => {
  test('lists programs and user maps, leaving out .rodata', () => {
    assert.deepEqual(loaded().programs, ['fx_connect4', 'fx_connect4_b', 'fx_sk_lookup']);
    assert.deepEqual(loaded().maps, ['fx_hash', 'fx_socks']);
  });

  test('pins LIBBPF_PIN_BY_NAME maps under pinRoot', () => {
    assert.deepEqual(fs.readdirSync(pinRoot).sort(), ['fx_hash', 'fx_socks']);
    const pinned = openPinnedMap(path.join(pinRoot, 'fx_hash'));
    cleanups.push(() => pinned.close());
    assert.equal(pinned.info.id, loaded().map('fx_hash').info.id);
  });

  test('creates a missing pinRoot (mkdir -p)', async () => {
    const nested = path.join(pinRoot, 'nested', 'deeper');
    const second = await loadObject(fixturePath, nested);
    second.close();
    assert.deepEqual(fs.readdirSync(nested).sort(), ['fx_hash', 'fx_socks']);
  });

  test('a second load reuses the pinned map and sees values written before', async () => {
    const first = loaded().map('fx_hash');
    first.update(u32(42), u64(4242n));
    const again = await loadObject(fixturePath, pinRoot);
    try {
      const reused = again.map('fx_hash');
      assert.equal(reused.info.id, first.info.id);
      assert.deepEqual(reused.lookup(u32(42)), u64(4242n));
      reused.close();
    } finally {
      again.close();
      first.delete(u32(42));
      first.close();
    }
  });

  test('a file that is not ELF fails naming the path', async () => {
    const garbage = path.join(workDir, 'garbage.bpf.o');
    fs.writeFileSync(garbage, Buffer.from('this is not an ELF object at all, just text\n'));
    await assert.rejects(loadObject(garbage, pinRoot), (error: unknown) => {
      assert.ok(isNativeError(error));
      assert.equal(error.syscall, 'bpf_object__open_file');
      assert.ok(error.errno > 0);
      assert.ok(error.message.includes(garbage), error.message);
      return true;
    });
  });

  test('a missing file fails with ENOENT naming the path', async () => {
    const missing = path.join(workDir, 'missing.bpf.o');
    await assert.rejects(loadObject(missing, pinRoot), (error: unknown) => {
      assert.ok(isNativeError(error));
      assert.equal(error.code, 'ENOENT');
      assert.equal(error.errno, 2);
      assert.ok(error.message.startsWith(`bpf_object__open_file: No such file or directory (${missing})`), error.message);
      return true;
    });
  });

  test('a verifier rejection carries the verifier log', async () => {
    await assert.rejects(loadObject(rejectPath, pinRoot), (error: unknown) => {
      assert.ok(isNativeError(error));
      assert.equal(error.syscall, 'bpf_object__load');
      assert.equal(error.code, 'EACCES');
      assert.ok(error.message.includes(rejectPath));
      assert.match(error.message, /invalid mem access 'map_value_or_null'/);
      assert.ok(error.log?.includes('BEGIN PROG LOAD LOG'), error.log);
      return true;
    });
  });

  test('concurrent loads keep their libbpf logs apart (per-thread capture)', async () => {
    const garbage = path.join(workDir, 'garbage-concurrent.bpf.o');
    fs.writeFileSync(garbage, 'not ELF');
    const outcomes = await Promise.allSettled([
      loadObject(rejectPath, pinRoot),
      loadObject(garbage, pinRoot),
      loadObject(rejectPath, pinRoot),
      loadObject(garbage, pinRoot),
    ]);
    for (const [i, outcome] of outcomes.entries()) {
      assert.equal(outcome.status, 'rejected');
      const error = (outcome as PromiseRejectedResult).reason as unknown;
      assert.ok(isNativeError(error));
      if (i % 2 === 0) {
        assert.match(error.log ?? '', /map_value_or_null/);
        assert.doesNotMatch(error.log ?? '', /garbage-concurrent/);
      } else {
        assert.match(error.log ?? '', /garbage-concurrent/);
        assert.doesNotMatch(error.log ?? '', /PROG LOAD LOG/);
      }
    }
  });

  test('map() of an unknown name is an argument error listing the maps', () => {
    assert.throws(
      () => loaded().map('nope'),
      (error: unknown) => error instanceof NativeArgumentError && error.argument === 'name' && /fx_hash, fx_socks/.test(error.message),
    );
  });
});

describe('BpfMap', () => {
  test('info describes the map', () => {
    const map = loaded().map('fx_hash');
    cleanups.push(() => map.close());
    assert.equal(map.info.name, 'fx_hash');
    assert.equal(map.info.type, BPF_MAP_TYPE_HASH);
    assert.equal(map.info.keySize, 4);
    assert.equal(map.info.valueSize, 8);
    assert.equal(map.info.maxEntries, 64);
    assert.ok(map.info.id > 0);
  });

  test('update, lookup, keys, delete', () => {
    const map = loaded().map('fx_hash');
    cleanups.push(() => map.close());
    assert.equal(map.lookup(u32(1)), null);
    map.update(u32(1), u64(11n));
    map.update(u32(2), u64(22n), BPF_NOEXIST);
    map.update(u32(1), u64(111n), BPF_EXIST);
    assert.deepEqual(map.lookup(u32(1)), u64(111n));
    assert.deepEqual(
      map
        .keys()
        .map((key) => key.readUInt32LE())
        .sort(),
      [1, 2],
    );
    assert.equal(map.delete(u32(1)), true);
    assert.equal(map.delete(u32(1)), false);
    assert.equal(map.delete(u32(2)), true);
    assert.deepEqual(map.keys(), []);
  });

  test('update flags map to kernel errors: NOEXIST on present is EEXIST, EXIST on absent is ENOENT', () => {
    const map = loaded().map('fx_hash');
    cleanups.push(() => map.close());
    map.update(u32(9), u64(9n));
    try {
      assert.throws(
        () => map.update(u32(9), u64(10n), BPF_NOEXIST),
        (error: unknown) => isNativeError(error) && error.code === 'EEXIST' && error.syscall === 'bpf_map_update_elem',
      );
      assert.throws(
        () => map.update(u32(10), u64(10n), BPF_EXIST),
        (error: unknown) => isNativeError(error) && error.code === 'ENOENT' && /map fx_hash/.test(error.message),
      );
    } finally {
      map.delete(u32(9));
    }
  });

  test('a key or value of the wrong size is rejected in TypeScript, naming the argument', () => {
    const map = loaded().map('fx_hash');
    cleanups.push(() => map.close());
    assert.throws(
      () => map.lookup(Buffer.alloc(3)),
      (error: unknown) => {
        assert.ok(error instanceof NativeArgumentError);
        assert.ok(error instanceof TypeError);
        assert.equal(error.argument, 'key');
        assert.equal(
          error.message,
          'BpfMap.lookup: key must be a Buffer of exactly 4 bytes (keySize of map fx_hash), got a Buffer of 3 bytes',
        );
        return true;
      },
    );
    assert.throws(
      () => map.update(u32(1), Buffer.alloc(4)),
      (error: unknown) => {
        return error instanceof NativeArgumentError && error.argument === 'value' && /exactly 8 bytes/.test(error.message);
      },
    );
    assert.throws(() => map.delete('key' as unknown as Buffer), NativeArgumentError);
  });

  test('C++ checks sizes too when the raw binding is called directly', () => {
    const raw = loadBinding().openPinnedMap(path.join(pinRoot, 'fx_hash'));
    try {
      assert.throws(
        () => raw.lookup(Buffer.alloc(3)),
        (error: unknown) =>
          error instanceof TypeError &&
          (error as TypeError & { errno?: number }).errno === 22 &&
          /key is 3 bytes; map fx_hash has keySize 4/.test(error.message),
      );
      assert.throws(() => raw.update(u32(1), Buffer.alloc(2), 0), /value is 2 bytes; map fx_hash has valueSize 8/);
    } finally {
      raw.close();
    }
  });

  test('a closed map fails with EBADF', () => {
    const map = loaded().map('fx_hash');
    map.close();
    map.close(); // idempotent
    assert.throws(
      () => map.lookup(u32(1)),
      (error: unknown) => isNativeError(error) && error.code === 'EBADF' && /map fx_hash is closed/.test(error.message),
    );
  });

  test('pin puts the map at a new path; openPinnedMap opens it', () => {
    const map = loaded().map('fx_hash');
    cleanups.push(() => map.close());
    const pinPath = path.join(pinRoot, 'fx_hash_again');
    map.pin(pinPath);
    const reopened = openPinnedMap(pinPath);
    assert.equal(reopened.info.id, map.info.id);
    reopened.close();
    fs.unlinkSync(pinPath);
  });

  test('updateSocket stores a socket; lookup returns its SO_COOKIE', async (t) => {
    const socks = loaded().map('fx_socks');
    t.after(() => socks.close());
    assert.equal(socks.info.type, BPF_MAP_TYPE_SOCKHASH);
    const server = net.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => server.close());
    const fd = fdOf(server);
    socks.updateSocket(u32(1), fd);
    // A userspace lookup in a sockhash with 8-byte values returns the socket cookie.
    assert.deepEqual(socks.lookup(u32(1)), u64(socketCookie(fd)));
    assert.equal(socks.delete(u32(1)), true);
  });

  test('BpfObject.close leaves map handles working (they hold dup()ed fds)', async () => {
    const other = await loadObject(fixturePath, pinRoot);
    const map = other.map('fx_hash');
    other.close();
    try {
      map.update(u32(5), u64(5n));
      assert.deepEqual(map.lookup(u32(5)), u64(5n));
      assert.equal(map.delete(u32(5)), true);
    } finally {
      map.close();
    }
    assert.throws(
      () => other.map('fx_hash'),
      (error: unknown) => isNativeError(error) && error.code === 'EBADF',
    );
  });
});

describe('garbage collection', () => {
  test('a forgotten handle is closed by its finalizer, and an explicitly closed one is not closed twice', async () => {
    // gc() without --expose-gc on the test runner's command line (v8(3) flags at run time).
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const fdCount = () => fs.readdirSync('/proc/self/fd').length;
    const pinPath = path.join(pinRoot, 'fx_hash');
    const settle = async () => {
      for (let i = 0; i < 5; i++) {
        gc();
        await new Promise((resolve) => setImmediate(resolve));
      }
    };
    await settle();
    const baseline = fdCount();
    (() => {
      for (let i = 0; i < 20; i++) openPinnedMap(pinPath);
    })();
    assert.ok(fdCount() >= baseline + 20);
    await settle();
    assert.ok(fdCount() <= baseline + 1, `finalizers left ${fdCount() - baseline} fds open`);

    // Close one explicitly; the fd number it had is reused by the next open. If the finalizer of
    // the closed handle closed "its" fd again, it would close the new handle's fd.
    (() => {
      openPinnedMap(pinPath).close();
    })();
    const survivor = openPinnedMap(pinPath);
    await settle();
    assert.equal(survivor.lookup(u32(12345)), null, 'survivor fd was closed by a stale finalizer');
    survivor.close();
  });
});

describe('BpfLink on a cgroup', () => {
  test('attachCgroup attaches; a pinned link survives close(); openPinnedLink + detach removes it', async () => {
    const link = await loaded().attachCgroup('fx_connect4', cgroupDir);
    const { progId, type, id } = link.info;
    assert.equal(type, BPF_LINK_TYPE_CGROUP);
    assert.ok(id > 0);
    assert.deepEqual(
      cgroupPrograms(cgroupDir).map((p) => [p.id, p.name]),
      [[progId, 'fx_connect4']],
    );

    const pinPath = path.join(pinRoot, 'links', 'connect4');
    link.pin(pinPath); // creates links/
    cleanups.push(() => fs.rmSync(pinPath, { force: true }));
    link.close();
    link.close(); // idempotent
    assert.deepEqual(
      cgroupPrograms(cgroupDir).map((p) => p.id),
      [progId],
      'closing the handle of a pinned link must not detach it',
    );

    const reopened = openPinnedLink(pinPath);
    assert.ok(reopened);
    assert.equal(reopened.info.id, id);
    reopened.detach();
    assert.deepEqual(cgroupPrograms(cgroupDir), [], 'detach() must detach even while pinned');
    reopened.unpin();
    assert.equal(fs.existsSync(pinPath), false);
    reopened.close();
    assert.equal(openPinnedLink(pinPath), null);
  });

  test('the attached program runs for sockets in the cgroup', async () => {
    const counter = loaded().map('fx_hash');
    const key = u32(7); // fx_config in the fixture: the slot fx_connect4 counts in
    counter.update(key, u64(0n));
    const link = await loaded().attachCgroup('fx_connect4', cgroupDir);
    const server = net.createServer((socket) => socket.end());
    try {
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const { port } = server.address() as net.AddressInfo;
      // A child that moves itself into the test cgroup, then connects once. Async, so this
      // process keeps serving the connection meanwhile.
      const script =
        `require('fs').writeFileSync(${JSON.stringify(path.join(cgroupDir, 'cgroup.procs'))}, String(process.pid));` +
        `require('net').connect(${port}, '127.0.0.1', () => process.exit(0));`;
      await promisify(execFile)(process.execPath, ['-e', script], { timeout: 10_000 });
      assert.ok((counter.lookup(key) as Buffer).readBigUInt64LE() >= 1n, 'fx_connect4 did not count the connect');
    } finally {
      server.close();
      link.close();
      counter.delete(key);
      counter.close();
    }
  });

  test('updateProgram swaps the program in place; closing an unpinned link releases it', async () => {
    const link = await loaded().attachCgroup('fx_connect4', cgroupDir);
    const before = link.info;
    link.updateProgram(loaded(), 'fx_connect4_b');
    const after = link.info;
    assert.equal(after.id, before.id, 'same link');
    assert.notEqual(after.progId, before.progId);
    assert.deepEqual(
      cgroupPrograms(cgroupDir).map((p) => [p.id, p.name]),
      [[after.progId, 'fx_connect4_b']],
    );
    assert.throws(
      () => link.updateProgram(loaded(), 'nope'),
      (error: unknown) => error instanceof NativeArgumentError && error.argument === 'programName',
    );
    // Kernel rule: a link with no pin is released when its last fd closes.
    link.close();
    assert.deepEqual(cgroupPrograms(cgroupDir), []);
  });

  test('unpin of a never-pinned link and pin over an existing pin are clear errors', async () => {
    const link = await loaded().attachCgroup('fx_connect4', cgroupDir);
    try {
      assert.throws(
        () => link.unpin(),
        (error: unknown) => isNativeError(error) && error.code === 'EINVAL' && /not pinned/.test(error.message),
      );
      const pinPath = path.join(pinRoot, 'links', 'twice');
      link.pin(pinPath);
      assert.throws(
        () => link.pin(path.join(pinRoot, 'links', 'again')),
        (error: unknown) => isNativeError(error) && error.code === 'EBUSY' && error.message.includes(pinPath),
      );
      link.unpin();
      assert.equal(fs.existsSync(pinPath), false);
    } finally {
      link.close();
    }
  });

  test('attaching to a path that is not a cgroup directory fails naming it', async () => {
    const notCgroup = path.join(workDir, 'not-a-dir');
    fs.writeFileSync(notCgroup, '');
    await assert.rejects(loaded().attachCgroup('fx_connect4', notCgroup), (error: unknown) => {
      return isNativeError(error) && error.code === 'ENOTDIR' && error.syscall === 'open' && error.message.includes(notCgroup);
    });
  });

  test('openPinnedLink refuses a map pin; openPinnedMap refuses a link pin', async () => {
    assert.throws(
      () => openPinnedLink(path.join(pinRoot, 'fx_hash')),
      (error: unknown) => isNativeError(error) && error.code === 'EINVAL' && /bpf-map pin, not a link/.test(error.message),
    );
    const link = await loaded().attachCgroup('fx_connect4', cgroupDir);
    const pinPath = path.join(pinRoot, 'links', 'kind');
    try {
      link.pin(pinPath);
      assert.throws(
        () => openPinnedMap(pinPath),
        (error: unknown) => isNativeError(error) && error.code === 'EINVAL' && /bpf-link pin, not a map/.test(error.message),
      );
    } finally {
      link.unpin();
      link.close();
    }
    assert.deepEqual(cgroupPrograms(cgroupDir), [], 'every link of these tests is released');
  });
});
describe('BpfLink on a network namespace', () => {
  test('attachNetns attaches sk_lookup; bpftool link lists it; close releases it', async () => {
    assert.ok(netns);
    const link = await loaded().attachNetns('fx_sk_lookup', netns.path);
    const info = link.info;
    assert.equal(info.type, BPF_LINK_TYPE_NETNS);
    const listed = kernelLinks().find((entry) => entry.id === info.id);
    assert.ok(listed, 'link missing from bpftool link');
    assert.equal(listed.type, 'netns');
    assert.equal(listed.prog_id, info.progId);
    assert.equal(listed.netns_ino, fs.statSync(netns.path).ino);
    link.close();
    assert.equal(
      kernelLinks().find((entry) => entry.id === info.id),
      undefined,
    );
  });

  test('a path that is not a network namespace is rejected by the kernel', async () => {
    await assert.rejects(loaded().attachNetns('fx_sk_lookup', '/proc/self/ns/uts'), (error: unknown) => {
      return isNativeError(error) && error.syscall === 'bpf_program__attach_netns' && error.message.includes('/proc/self/ns/uts');
    });
  });

  test('BpfObject.close while an attach is in flight still resolves a working link', async () => {
    assert.ok(netns);
    const other = await loadObject(fixturePath, pinRoot);
    const pending = other.attachNetns('fx_sk_lookup', netns.path);
    other.close(); // deferred until the attach settles
    const link = await pending;
    const id = link.info.id;
    assert.ok(kernelLinks().some((entry) => entry.id === id));
    link.close();
  });
});
