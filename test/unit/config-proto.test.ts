// Tests for src/proto: the committed generated types are what proto-loader-gen-types makes of proto/ now, the
// loader finds proto/ from the compiled tree and refuses files outside it, and the config codec round-trips
// the model and allows pushes to be assembled from resources encoded once.
import { test, describe } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  CONFIG_PROTO_FILE,
  LOADER_OPTIONS,
  ProtoLoadError,
  configProtocol,
  decodeResource,
  loadFerryProto,
  protoDirectory,
  resourceMessage,
} from '../../src/proto';
import type { Service, Workload } from '../../src/state';

// This file runs as dist/test/unit/config-proto.test.js.
const REPO = path.resolve(__dirname, '..', '..', '..');

/** Every file below `dir`, as paths relative to it, sorted. */
function filesUnder(dir: string, prefix = ''): string[] {
  const found: string[] = [];
  for (const entry of fs.readdirSync(path.join(dir, prefix), { withFileTypes: true })) {
    const relative = path.join(prefix, entry.name);
    if (entry.isDirectory()) found.push(...filesUnder(dir, relative));
    else found.push(relative);
  }
  return found.sort();
}

const WORKLOAD: Workload = {
  uid: 'shop/cart-1',
  namespace: 'shop',
  name: 'cart-1',
  node: 'node-a',
  serviceAccount: 'cart',
  ips: ['10.244.0.11', 'fd10:244::11'],
  labels: { version: 'v1', app: 'cart' },
  meshEnabled: true,
  netnsPath: '',
  excludeOutboundPorts: [5432],
  excludeOutboundCidrs: ['10.96.0.0/12'],
};

const SERVICE: Service = {
  namespace: 'shop',
  name: 'cart',
  hostname: 'cart.shop.svc.cluster.local',
  vips: ['10.96.0.10'],
  ports: [
    {
      name: 'http',
      port: 80,
      endpoints: [
        { ip: '10.244.0.11', port: 8080, workloadUid: 'shop/cart-1' },
        { ip: '10.244.1.3', port: 8080 },
      ],
    },
    { port: 9000, endpoints: [] },
  ],
};

describe('generated types', () => {
  test('the committed src/proto/generated is exactly what `npm run proto:types` makes of proto/ now', (t) => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-proto-types-'));
    t.after(() => fs.rmSync(out, { recursive: true, force: true }));
    const run = spawnSync(process.execPath, [path.join(REPO, 'scripts', 'proto-types.js'), '--out', out], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    const committed = path.join(REPO, 'src', 'proto', 'generated');
    const fresh = filesUnder(out);
    assert.ok(fresh.includes('ferry/config/v1/ControllerMessage.ts'), `generator made: ${fresh.join(', ')}`);
    assert.deepEqual(filesUnder(committed), fresh, 'file lists differ: run npm run proto:types and commit the result');
    for (const file of fresh) {
      assert.equal(
        fs.readFileSync(path.join(committed, file), 'utf8'),
        fs.readFileSync(path.join(out, file), 'utf8'),
        `${file} differs: run npm run proto:types and commit the result`,
      );
    }
  });

  test("the generator's options are the loader's", () => {
    const script = fs.readFileSync(path.join(REPO, 'scripts', 'proto-types.js'), 'utf8');
    const flags = /const options = \[([^\]]*)\]/.exec(script)?.[1] ?? '';
    assert.equal(LOADER_OPTIONS.keepCase, false);
    assert.equal(LOADER_OPTIONS.longs, String);
    assert.match(flags, /'--longs=String'/);
    assert.equal(LOADER_OPTIONS.enums, String);
    assert.match(flags, /'--enums=String'/);
    assert.equal(LOADER_OPTIONS.defaults, true);
    assert.match(flags, /'--defaults'/);
    assert.equal(LOADER_OPTIONS.oneofs, true);
    assert.match(flags, /'--oneofs'/);
    assert.doesNotMatch(flags, /keepCase|--bytes/, 'flags the loader does not share');
  });
});

describe('loadFerryProto', () => {
  test('finds proto/ at the package root from the compiled tree', () => {
    assert.equal(protoDirectory(), path.join(REPO, 'proto'));
    const { definition } = loadFerryProto(CONFIG_PROTO_FILE);
    assert.ok('ferry.config.v1.ConfigService' in definition);
    assert.equal(loadFerryProto(CONFIG_PROTO_FILE).definition, definition, 'parsed once');
  });

  test('a missing file, or one outside proto/, is a ProtoLoadError naming it', () => {
    for (const file of ['ferry/nope/v1/nope.proto', '../package.json']) {
      assert.throws(
        () => loadFerryProto(file),
        (err: unknown) => err instanceof ProtoLoadError && err.code === 'FERRY_ERR_PROTO_LOAD' && err.message.includes(file),
      );
    }
  });
});

describe('config codec', () => {
  test('a workload and a service round-trip through their messages (an empty netnsPath travels as absent)', () => {
    const { encodeControllerMessage, decodeControllerMessage } = configProtocol();
    const bytes = encodeControllerMessage({
      resources: [resourceMessage('workload', WORKLOAD.uid, WORKLOAD, 'v1'), resourceMessage('service', 'shop/cart', SERVICE, 'v2')],
    });
    const decoded = decodeControllerMessage(bytes);
    assert.equal(decoded.resources[0].workload?.netnsPath, undefined);
    const [w, s] = decoded.resources.map(decodeResource);
    assert.ok(w.ok && s.ok);
    assert.deepEqual(w.value, WORKLOAD);
    assert.equal(w.version, 'v1');
    assert.deepEqual(s.value, SERVICE);
    assert.equal(s.kind, 'service');
  });

  test('labels are encoded sorted, so equal workloads are equal bytes', () => {
    const { encodeControllerMessage } = configProtocol();
    const reordered = { ...WORKLOAD, labels: { app: 'cart', version: 'v1' } };
    assert.deepEqual(
      encodeControllerMessage({ resources: [resourceMessage('workload', WORKLOAD.uid, WORKLOAD)] }),
      encodeControllerMessage({ resources: [resourceMessage('workload', WORKLOAD.uid, reordered)] }),
    );
  });

  test('a push assembled from separately encoded parts decodes as one message', () => {
    const { encodeControllerMessage, decodeControllerMessage } = configProtocol();
    const parts = [
      encodeControllerMessage({ nonce: '7', systemVersion: '42', synced: true }),
      encodeControllerMessage({ resources: [resourceMessage('workload', WORKLOAD.uid, WORKLOAD, 'a')] }),
      encodeControllerMessage({ resources: [resourceMessage('service', 'shop/cart', SERVICE, 'b')] }),
      encodeControllerMessage({ removed: [{ kind: 'SERVICE', name: 'shop/old' }] }),
    ];
    const message = decodeControllerMessage(Buffer.concat(parts));
    assert.equal(message.nonce, '7');
    assert.equal(message.systemVersion, '42');
    assert.equal(message.synced, true);
    assert.deepEqual(
      message.resources.map((r) => [r.kind, r.name, r.version]),
      [
        ['WORKLOAD', 'shop/cart-1', 'a'],
        ['SERVICE', 'shop/cart', 'b'],
      ],
    );
    assert.deepEqual(message.removed, [{ kind: 'SERVICE', name: 'shop/old' }]);
  });

  test('a policy travels as its model JSON; a body that does not fit the kind or bad JSON names the field', () => {
    const policy = { namespace: 'shop', name: 'deny', action: 'DENY' as const, dryRun: false, rules: [] };
    const decoded = decodeResource(
      configProtocol().decodeControllerMessage(
        configProtocol().encodeControllerMessage({ resources: [resourceMessage('authorizationPolicy', 'shop/deny', policy)] }),
      ).resources[0],
    );
    assert.ok(decoded.ok);
    assert.deepEqual(decoded.value, policy);
    const wrongBody = decodeResource({ kind: 'SERVICE', name: 'shop/x', version: '1', workload: null, body: 'workload' } as never);
    assert.ok(!wrongBody.ok);
    assert.equal(wrongBody.field, 'body');
    const badJson = decodeResource({
      kind: 'PEER_AUTHENTICATION',
      name: 'shop/x',
      version: '1',
      peerAuthenticationJson: Buffer.from('{nope'),
      body: 'peerAuthenticationJson',
    } as never);
    assert.ok(!badJson.ok);
    assert.equal(badJson.field, 'peerAuthenticationJson');
    assert.match(badJson.message, /not valid JSON/);
    const unknown = decodeResource({ kind: 9, name: 'x', version: '1' } as never);
    assert.ok(!unknown.ok);
    assert.equal(unknown.field, 'kind');
  });
});
