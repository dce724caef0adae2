// src/native's error registry and its TypeScript argument checks. These run before the addon is
// touched, so this file needs neither root nor a built ferry.node.
import * as assert from 'node:assert/strict';
import * as net from 'node:net';
import { describe, test } from 'node:test';

import {
  NATIVE_ERROR_CODES,
  NativeArgumentError,
  NativeError,
  NativeLoadError,
  NativeUnsupportedError,
  assertKernelReady,
  closeFd,
  configurePodRouting,
  connectInNetns,
  connectSocketInNetns,
  fdOf,
  isNativeError,
  listenInNetns,
  loadObject,
  netnsCookie,
  openPinnedLink,
  openPinnedMap,
  socketCookie,
  socketInNetns,
  socketMark,
  socketOptions,
  tuneSocket,
} from '../../src/native';
import { toNativeError } from '../../src/native/errors';

describe('error registry', () => {
  test('codes are unique, prefixed FERRY_ERR_NATIVE_ and documented', () => {
    const codes = Object.keys(NATIVE_ERROR_CODES);
    assert.equal(new Set(codes).size, codes.length);
    for (const [code, doc] of Object.entries(NATIVE_ERROR_CODES)) {
      assert.match(code, /^FERRY_ERR_NATIVE_[A-Z_]+$/);
      assert.ok(doc.length > 40, `${code} needs a description`);
    }
  });

  test('every error class carries a registered code, a name and a cause', () => {
    const cause = new Error('underlying');
    const argument = new NativeArgumentError('f', 'x', 'a number', 'y', { cause });
    const syscall = new NativeError('m', { errno: 2, code: 'ENOENT', syscall: 'open' }, { cause });
    const unsupported = new NativeUnsupportedError('5.4.0', [{ name: 'prog_sk_lookup', ok: false, detail: 'd' }]);
    const load = new NativeLoadError('m', { cause });
    const registered = Object.keys(NATIVE_ERROR_CODES);
    for (const [error, code] of [
      [argument, argument.code],
      [syscall, syscall.ferryCode],
      [unsupported, unsupported.code],
      [load, load.code],
    ] as const) {
      assert.ok(registered.includes(code), `${error.name} uses unregistered ${code}`);
      assert.equal(error.name, error.constructor.name);
      assert.ok(error instanceof Error);
    }
    assert.equal(argument.cause, cause);
    assert.equal(syscall.cause, cause);
    assert.equal(load.cause, cause);
    // The registry covers exactly the classes: no documented code without a user.
    assert.deepEqual(new Set([argument.code, syscall.ferryCode, unsupported.code, load.code]), new Set(registered));
  });

  test('argument errors are TypeErrors and not NativeErrors', () => {
    const error = new NativeArgumentError('listenInNetns', 'options.port', 'an integer in 1..65535', 70000);
    assert.ok(error instanceof TypeError);
    assert.equal(isNativeError(error), false);
    assert.equal(error.argument, 'options.port');
    assert.equal(error.message, 'listenInNetns: options.port must be an integer in 1..65535, got 70000');
  });

  test('raw addon errors become NativeError keeping errno, code, syscall, log and the original as cause', () => {
    const raw = Object.assign(new Error('bpf_object__load: Permission denied (/x.o)\nverifier says no'), {
      errno: 13,
      code: 'EACCES',
      syscall: 'bpf_object__load',
      log: 'verifier says no',
    });
    const converted = toNativeError(raw);
    assert.ok(isNativeError(converted));
    assert.equal(converted.errno, 13);
    assert.equal(converted.code, 'EACCES');
    assert.equal(converted.syscall, 'bpf_object__load');
    assert.equal(converted.log, 'verifier says no');
    assert.equal(converted.message, raw.message);
    assert.equal(converted.cause, raw);
    const unrelated = new RangeError('x');
    assert.equal(toNativeError(unrelated), unrelated);
  });
});

describe('assertKernelReady', () => {
  test('passes a report whose checks are all ok', () => {
    assertKernelReady({ kernelRelease: '6.1.0', checks: [{ name: 'btf', ok: true, detail: 'found' }] });
  });

  test('names every failed check with its detail in one error', () => {
    const report = {
      kernelRelease: '5.4.0',
      checks: [
        { name: 'bpf_syscall', ok: true, detail: 'bpf() loads programs' },
        { name: 'prog_sk_lookup', ok: false, detail: 'sk_lookup programs not supported by kernel 5.4.0 (need 5.9+)' },
        { name: 'bpffs', ok: false, detail: 'no bpf filesystem at /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf)' },
      ],
    };
    assert.throws(
      () => assertKernelReady(report),
      (error: unknown) => {
        assert.ok(error instanceof NativeUnsupportedError);
        assert.equal(error.code, 'FERRY_ERR_NATIVE_UNSUPPORTED');
        assert.deepEqual(
          error.failed.map((check) => check.name),
          ['prog_sk_lookup', 'bpffs'],
        );
        assert.match(error.message, /prog_sk_lookup: sk_lookup programs not supported by kernel 5\.4\.0 \(need 5\.9\+\)/);
        assert.match(error.message, /bpffs: no bpf filesystem at \/sys\/fs\/bpf \(mount -t bpf bpf \/sys\/fs\/bpf\)/);
        assert.doesNotMatch(error.message, /bpf_syscall/);
        return true;
      },
    );
  });
});

describe('argument validation before C++', () => {
  // Each case: the call, and the argument path the error must name.
  const rejects = (argument: string) => (error: unknown) => {
    assert.ok(error instanceof NativeArgumentError, `expected NativeArgumentError, got ${String(error)}`);
    assert.ok(error instanceof TypeError);
    assert.equal(error.argument, argument);
    assert.ok(error.message.includes(argument));
    return true;
  };

  test('paths must be non-empty strings', async () => {
    await assert.rejects(loadObject('', '/sys/fs/bpf/x'), rejects('objectPath'));
    await assert.rejects(loadObject('/x.o', 'a\0b'), rejects('pinRoot'));
    await assert.rejects(netnsCookie(''), rejects('netnsPath'));
    assert.throws(() => openPinnedMap(''), rejects('pinPath'));
    assert.throws(() => openPinnedLink(42 as unknown as string), rejects('pinPath'));
  });

  test('ports must be integers in 1..65535', async () => {
    await assert.rejects(listenInNetns('/run/netns/x', { host: '127.0.0.1', port: 70000 }), rejects('options.port'));
    await assert.rejects(listenInNetns('/run/netns/x', { host: '127.0.0.1', port: 0 }), rejects('options.port'));
    await assert.rejects(connectInNetns('/run/netns/x', { host: '127.0.0.1', port: 80.5 }), rejects('options.port'));
  });

  test('family must be 4 or 6 and match the host', async () => {
    await assert.rejects(listenInNetns('/run/netns/x', { host: '127.0.0.1', port: 1, family: 5 as 4 }), rejects('options.family'));
    await assert.rejects(
      connectInNetns('/run/netns/x', { host: '::1', port: 1, family: 4 }),
      (error: unknown) => rejects('options.host')(error) && /IPv4/.test((error as Error).message),
    );
    await assert.rejects(connectInNetns('/run/netns/x', { host: 'localhost', port: 1 }), rejects('options.host'));
    await assert.rejects(connectInNetns('/run/netns/x', { host: 'fe80::1%eth0', port: 1 }), rejects('options.host'));
  });

  test('marks, backlogs and timeouts are range-checked', async () => {
    await assert.rejects(listenInNetns('/run/netns/x', { host: '::1', port: 1, mark: -1 }), rejects('options.mark'));
    await assert.rejects(listenInNetns('/run/netns/x', { host: '::1', port: 1, backlog: 1.5 }), rejects('options.backlog'));
    await assert.rejects(connectInNetns('/run/netns/x', { host: '::1', port: 1, timeoutMs: 0 }), rejects('options.timeoutMs'));
  });

  test('fds must be non-negative integers', () => {
    assert.throws(() => socketCookie(-1), rejects('fd'));
    assert.throws(() => socketMark(1.5), rejects('fd'));
    assert.throws(() => closeFd(Number.NaN), rejects('fd'));
  });

  test('fdOf names the missing handle of a socket that is not open', () => {
    assert.throws(() => fdOf(new net.Socket()), rejects('socket._handle.fd'));
    assert.throws(() => fdOf(net.createServer()), rejects('socket._handle.fd'));
  });

  test('socketInNetns: family, mark, transparent and a bind address of the family', async () => {
    const ns = '/run/netns/x';
    await assert.rejects(socketInNetns('', { family: 4 }), rejects('netnsPath'));
    await assert.rejects(socketInNetns(ns, { family: 5 as 4 }), rejects('options.family'));
    await assert.rejects(socketInNetns(ns, { family: 4, mark: 2 ** 32 }), rejects('options.mark'));
    await assert.rejects(socketInNetns(ns, { family: 4, transparent: 'yes' as unknown as boolean }), rejects('options.transparent'));
    await assert.rejects(socketInNetns(ns, { family: 4, bindHost: '::1' }), rejects('options.bindHost'));
    await assert.rejects(socketInNetns(ns, { family: 6, bindHost: 'fe80::1%eth0' }), rejects('options.bindHost'));
    await assert.rejects(
      socketInNetns(ns, { family: 4, transparent: true }),
      (error: unknown) => rejects('options.bindHost')(error) && /required when options\.transparent is true/.test((error as Error).message),
    );
  });

  test('connectSocketInNetns checks its own field names, sourceHost included', async () => {
    const ns = '/run/netns/x';
    await assert.rejects(connectSocketInNetns(ns, { host: 'example.com', port: 80 }), rejects('options.host'));
    await assert.rejects(connectSocketInNetns(ns, { host: '10.0.0.1', port: 0 }), rejects('options.port'));
    await assert.rejects(connectSocketInNetns(ns, { host: '10.0.0.1', port: 80, timeoutMs: 2 ** 31 }), rejects('options.timeoutMs'));
    await assert.rejects(connectSocketInNetns(ns, { host: '10.0.0.1', port: 80, transparent: true }), rejects('options.sourceHost'));
    await assert.rejects(
      connectSocketInNetns(ns, { host: '10.0.0.1', port: 80, transparent: true, sourceHost: 'fd00::1' }),
      rejects('options.sourceHost'),
    );
    await assert.rejects(
      connectInNetns(ns, { host: '10.0.0.1', port: 80, transparent: true }),
      (error: unknown) => rejects('options.sourceHost')(error) && (error as Error).message.startsWith('connectInNetns:'),
    );
  });

  test("tuneSocket ranges are the kernel's; socketOptions needs an fd", () => {
    assert.throws(() => tuneSocket(-1, {}), rejects('fd'));
    assert.throws(() => tuneSocket(3, null as unknown as object), rejects('options'));
    assert.throws(() => tuneSocket(3, { keepAliveIdleSeconds: 0 }), rejects('options.keepAliveIdleSeconds'));
    assert.throws(() => tuneSocket(3, { keepAliveIntervalSeconds: 32768 }), rejects('options.keepAliveIntervalSeconds'));
    assert.throws(() => tuneSocket(3, { keepAliveCount: 128 }), rejects('options.keepAliveCount'));
    assert.throws(() => tuneSocket(3, { userTimeoutMs: -1 }), rejects('options.userTimeoutMs'));
    assert.throws(() => tuneSocket(3, { lingerZero: 1 as unknown as boolean }), rejects('options.lingerZero'));
    assert.throws(() => socketOptions(0.5), rejects('fd'));
  });

  test('configurePodRouting: a non-zero mark, an unreserved table, distinct families', async () => {
    const ns = '/run/netns/x';
    const good = { mark: 0xfe45, table: 15006, families: [4, 6] as Array<4 | 6>, enable: true };
    await assert.rejects(configurePodRouting('', good), rejects('netnsPath'));
    await assert.rejects(configurePodRouting(ns, { ...good, mark: 0 }), rejects('options.mark'));
    for (const table of [0, 252, 253, 254, 255, 2 ** 32]) {
      await assert.rejects(configurePodRouting(ns, { ...good, table }), rejects('options.table'));
    }
    for (const families of [[], [4, 4], [5], [4, 6, 4], 'both']) {
      await assert.rejects(configurePodRouting(ns, { ...good, families: families as Array<4 | 6> }), rejects('options.families'));
    }
    await assert.rejects(configurePodRouting(ns, { ...good, enable: undefined as unknown as boolean }), rejects('options.enable'));
  });
});
