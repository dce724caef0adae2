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
  connectInNetns,
  fdOf,
  isNativeError,
  listenInNetns,
  loadObject,
  netnsCookie,
  openPinnedLink,
  openPinnedMap,
  socketCookie,
  socketMark,
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
    assert.deepEqual(
      new Set([argument.code, syscall.ferryCode, unsupported.code, load.code]),
      new Set(registered),
    );
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
    await assert.rejects(
      listenInNetns('/run/netns/x', { host: '127.0.0.1', port: 1, family: 5 as 4 }),
      rejects('options.family'),
    );
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
    await assert.rejects(
      connectInNetns('/run/netns/x', { host: '::1', port: 1, timeoutMs: 0 }),
      rejects('options.timeoutMs'),
    );
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
});
