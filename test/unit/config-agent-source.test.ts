// Tests for the agent's controller flags (src/config agentConfigFrom): --controller with its CA, token file and
// server name (host:port or a unix socket), from flags or FERRY_* variables; --pod-netns-dir. Pure computation.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { DEFAULT_TOKEN_FILE, agentConfigFrom, type AgentOptions } from '../../src/config';

const BASE: AgentOptions = { node: 'node-a', cgroup: '/sys/fs/cgroup/ferry' };

function refused(options: AgentOptions, pattern: RegExp, env: NodeJS.ProcessEnv = {}): void {
  assert.throws(
    () => agentConfigFrom({ ...BASE, ...options }, env),
    (err: unknown) => {
      assert.equal((err as { code?: string }).code, 'FERRY_ERR_CONFIG_INVALID');
      assert.match((err as Error).message, pattern);
      return true;
    },
  );
}

test('--controller selects the gRPC stream, with the CA, the token file (default the pod token) and a server name', () => {
  const config = agentConfigFrom({ ...BASE, controller: 'ferry-controller.ferry-system:15012', controllerCa: '/etc/ferry/ca.pem' }, {});
  assert.deepEqual(config.controller, {
    address: 'ferry-controller.ferry-system:15012',
    caFile: '/etc/ferry/ca.pem',
    tokenFile: DEFAULT_TOKEN_FILE,
  });
  assert.equal(config.podNetnsDir, undefined);
  const fromEnv = agentConfigFrom(BASE, {
    FERRY_CONTROLLER: '[fd00::1]:15012',
    FERRY_CONTROLLER_CA: '/ca.pem',
    FERRY_TOKEN_FILE: '/var/run/secrets/tokens/ferry',
    FERRY_CONTROLLER_SERVER_NAME: 'controller.ferry.test',
  }).controller;
  assert.deepEqual(fromEnv, {
    address: '[fd00::1]:15012',
    caFile: '/ca.pem',
    tokenFile: '/var/run/secrets/tokens/ferry',
    serverName: 'controller.ferry.test',
  });
});

test('a controller, a well-formed address, its CA and absolute paths are required', () => {
  refused({}, /--controller HOST:PORT or unix:\/PATH \(or FERRY_CONTROLLER\) is required/);
  refused({ controller: '' }, /--controller .* is required/);
  refused({ controller: 'c:1' }, /--controller-ca \(or FERRY_CONTROLLER_CA\) is required/);
  for (const address of ['controller', 'c:0', 'c:99999', 'c:port', 'fd00::1:15012'])
    refused({ controller: address, controllerCa: '/ca.pem' }, /is not HOST:PORT/);
  refused({ controller: 'c:1', controllerCa: 'ca.pem' }, /--controller-ca "ca.pem" must be an absolute path/);
  refused({ controller: 'c:1', controllerCa: '/ca.pem', tokenFile: 'token' }, /--token-file "token" must be an absolute path/);
});

test('--controller takes a unix socket too, and --pod-netns-dir is read', () => {
  const config = agentConfigFrom(
    { ...BASE, controller: 'unix:/run/ferry/controller/agents.sock', controllerCa: '/ca.pem', podNetnsDir: '/run/ferry/pods' },
    {},
  );
  assert.deepEqual(config.controller, {
    address: 'unix:/run/ferry/controller/agents.sock',
    caFile: '/ca.pem',
    tokenFile: DEFAULT_TOKEN_FILE,
  });
  assert.equal(config.podNetnsDir, '/run/ferry/pods');
  assert.equal(
    agentConfigFrom({ ...BASE, controller: 'c:1', controllerCa: '/ca.pem' }, { FERRY_POD_NETNS_DIR: '/pods' }).podNetnsDir,
    '/pods',
  );
  for (const address of ['unix:relative.sock', 'unix:', 'unix:/run/../etc/sock', 'unix:/run//sock', 'unix:/run/dir/'])
    refused({ controller: address, controllerCa: '/ca.pem' }, /is not HOST:PORT|must be absolute and normalised/);
  refused({ controller: 'c:1', controllerCa: '/ca.pem', podNetnsDir: 'pods' }, /--pod-netns-dir "pods" must be an absolute path/);
});
