// Tests for the agent's configuration-source flags (src/config agentConfigFrom): --snapshot or --controller with
// its CA, token file and server name (host:port or a unix socket), from flags or FERRY_* variables; --ca-dir only
// with --snapshot; --pod-netns-dir. Pure computation.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { DEFAULT_TOKEN_FILE, agentConfigFrom, type AgentOptions } from '../../src/config';

const BASE: AgentOptions = { node: 'node-a', cgroup: '/sys/fs/cgroup/ferry' };
const SNAPSHOT: AgentOptions = { ...BASE, caDir: '/run/ferry/ca' };

test('--snapshot selects the snapshot file', () => {
  const config = agentConfigFrom({ ...SNAPSHOT, snapshot: '/run/ferry/snapshot.json' }, {});
  assert.deepEqual(config.configSource, { kind: 'snapshot', path: '/run/ferry/snapshot.json' });
  assert.equal(config.caDir, '/run/ferry/ca');
  assert.equal(config.podNetnsDir, undefined);
  assert.deepEqual(agentConfigFrom(SNAPSHOT, { FERRY_SNAPSHOT: '/run/s.json' }).configSource, { kind: 'snapshot', path: '/run/s.json' });
  assert.equal(agentConfigFrom(BASE, { FERRY_SNAPSHOT: '/run/s.json', FERRY_CA_DIR: '/ca' }).caDir, '/ca');
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
  refused({ snapshot: 'snapshot.json', caDir: '/ca' }, /--snapshot "snapshot.json" must be an absolute path/);
});

test('--controller takes a unix socket too; the CA directory is refused there, and --pod-netns-dir is read', () => {
  const config = agentConfigFrom(
    { ...BASE, controller: 'unix:/run/ferry/controller/agents.sock', controllerCa: '/ca.pem', podNetnsDir: '/run/ferry/pods' },
    {},
  );
  assert.deepEqual(config.configSource, {
    kind: 'controller',
    address: 'unix:/run/ferry/controller/agents.sock',
    caFile: '/ca.pem',
    tokenFile: DEFAULT_TOKEN_FILE,
  });
  assert.equal(config.caDir, undefined, 'no CA material on the controller path');
  assert.equal(config.podNetnsDir, '/run/ferry/pods');
  assert.equal(agentConfigFrom({ ...SNAPSHOT, snapshot: '/s.json' }, { FERRY_POD_NETNS_DIR: '/pods' }).podNetnsDir, '/pods');
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
  const controller = { controller: 'c:1', controllerCa: '/ca.pem' };
  refused({ ...controller, caDir: '/run/ferry/ca' }, /--ca-dir .*"\/run\/ferry\/ca" is for --snapshot only: .*must not hold CA material/);
  refused(controller, /--ca-dir .* is for --snapshot only/, { FERRY_CA_DIR: '/ca' });
  refused({ snapshot: '/s.json' }, /--ca-dir \(or FERRY_CA_DIR\) is required/);
  for (const address of ['unix:relative.sock', 'unix:', 'unix:/run/../etc/sock', 'unix:/run//sock', 'unix:/run/dir/'])
    refused({ controller: address, controllerCa: '/ca.pem' }, /is not HOST:PORT|must be absolute and normalised/);
  refused({ ...controller, podNetnsDir: 'pods' }, /--pod-netns-dir "pods" must be an absolute path/);
});
