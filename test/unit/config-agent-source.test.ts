// Tests for the agent's configuration-source flags (src/config agentConfigFrom): --snapshot or --controller with
// its CA, token file and server name, from flags or FERRY_* variables. Pure computation.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { DEFAULT_TOKEN_FILE, agentConfigFrom, type AgentOptions } from '../../src/config';

const BASE: AgentOptions = { node: 'node-a', cgroup: '/sys/fs/cgroup/ferry', caDir: '/run/ferry/ca' };

test('--snapshot selects the snapshot file', () => {
  assert.deepEqual(agentConfigFrom({ ...BASE, snapshot: '/run/ferry/snapshot.json' }, {}).configSource, {
    kind: 'snapshot',
    path: '/run/ferry/snapshot.json',
  });
  assert.deepEqual(agentConfigFrom(BASE, { FERRY_SNAPSHOT: '/run/s.json' }).configSource, { kind: 'snapshot', path: '/run/s.json' });
});

test('--controller selects the gRPC stream, with the CA, the token file (default the pod token) and a server name', () => {
  assert.deepEqual(
    agentConfigFrom({ ...BASE, controller: 'ferry-controller.ferry-system:15012', controllerCa: '/etc/ferry/ca.pem' }, {}).configSource,
    {
      kind: 'controller',
      address: 'ferry-controller.ferry-system:15012',
      caFile: '/etc/ferry/ca.pem',
      tokenFile: DEFAULT_TOKEN_FILE,
    },
  );
  const fromEnv = agentConfigFrom(BASE, {
    FERRY_CONTROLLER: '[fd00::1]:15012',
    FERRY_CONTROLLER_CA: '/ca.pem',
    FERRY_TOKEN_FILE: '/var/run/secrets/tokens/ferry',
    FERRY_CONTROLLER_SERVER_NAME: 'controller.ferry.test',
  }).configSource;
  assert.deepEqual(fromEnv, {
    kind: 'controller',
    address: '[fd00::1]:15012',
    caFile: '/ca.pem',
    tokenFile: '/var/run/secrets/tokens/ferry',
    serverName: 'controller.ferry.test',
  });
});

test('exactly one source, a well-formed address, a CA and absolute paths are required', () => {
  const refused = (options: AgentOptions, pattern: RegExp, env: NodeJS.ProcessEnv = {}): void => {
    assert.throws(
      () => agentConfigFrom({ ...BASE, ...options }, env),
      (err: unknown) => {
        assert.equal((err as { code?: string }).code, 'FERRY_ERR_CONFIG_INVALID');
        assert.match((err as Error).message, pattern);
        return true;
      },
    );
  };
  refused({}, /--controller HOST:PORT .* or --snapshot FILE .* is required/);
  refused({ snapshot: '/s.json', controller: 'c:1' }, /exclusive/);
  refused({ controller: 'c:1' }, /--controller-ca \(or FERRY_CONTROLLER_CA\) is required/);
  for (const address of ['controller', 'c:0', 'c:99999', 'c:port', 'fd00::1:15012'])
    refused({ controller: address, controllerCa: '/ca.pem' }, /is not HOST:PORT/);
  refused({ controller: 'c:1', controllerCa: 'ca.pem' }, /--controller-ca "ca.pem" must be an absolute path/);
  refused({ controller: 'c:1', controllerCa: '/ca.pem', tokenFile: 'token' }, /--token-file "token" must be an absolute path/);
  refused({ snapshot: 'snapshot.json' }, /--snapshot "snapshot.json" must be an absolute path/);
});
