// Tests for the storage-independent CA state (src/identity ca-state.ts): what a new CA holds, the rotation
// steps and their order, applying a transition to a key-value store (with pruning), and bad metadata.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import {
  CA_METADATA,
  IdentityError,
  applyCaTransition,
  caIssuerOf,
  checkCaMetadata,
  initialCaState,
  loadCaIssuer,
  parseCaMetadata,
  planRotationStep,
  type CaFiles,
  type RotationStep,
} from '../../src/identity';

const subject = 'test store';

async function rotated(files: CaFiles, step: RotationStep, prune = true): Promise<Record<string, string>> {
  const metadata = parseCaMetadata(files[CA_METADATA], (p) => new Error(p));
  return applyCaTransition(files, await planRotationStep(metadata, step, { subject }), { prune });
}

test('a new CA: root-1 and intermediate-1, keys marked secret, the intermediate signs', async () => {
  const initial = await initialCaState({ trustDomain: 'cluster.local', intermediate: true });
  assert.deepEqual(initial.metadata, {
    version: 1,
    trustDomain: 'cluster.local',
    generation: 1,
    issuer: 'intermediate-1',
    roots: ['root-1'],
    phase: 'steady',
    intermediate: true,
  });
  assert.deepEqual(
    initial.files.map((f) => [f.name, f.secret]),
    [
      ['root-1.key.pem', true],
      ['root-1.cert.pem', false],
      ['intermediate-1.key.pem', true],
      ['intermediate-1.cert.pem', false],
      ['intermediate-1.chain.pem', false],
    ],
  );
  assert.deepEqual(initial.retired, []);
  const files = applyCaTransition({}, initial);
  const issuer = caIssuerOf(initial.metadata, (name) => files[name]);
  const ca = await loadCaIssuer(issuer);
  assert.equal(ca.issuerCertPem, files['intermediate-1.cert.pem']);
  assert.deepEqual(issuer.issuerChainPem, [files['intermediate-1.cert.pem']]);
  assert.equal(new crypto.X509Certificate(files['intermediate-1.cert.pem']).checkIssued(new crypto.X509Certificate(issuer.roots[0])), true);
});

test('rotation steps run in order, each bumping the generation, and name the allowed step when out of order', async () => {
  let files: CaFiles = applyCaTransition({}, await initialCaState({ trustDomain: 'td', intermediate: true }));
  const refused = async (step: RotationStep, pattern: RegExp): Promise<void> => {
    await assert.rejects(rotated(files, step), (err: unknown) => {
      assert.ok(err instanceof IdentityError);
      assert.equal(err.code, 'FERRY_ERR_IDENTITY_ROTATION');
      assert.match(err.message, pattern);
      assert.ok(err.message.startsWith(`${subject}: `), err.message);
      return true;
    });
  };
  await refused('switchIssuer', /switchIssuer needs phase "rotating" but the CA is "steady" \(next step: beginRotation\)/);
  await refused('finishRotation', /finishRotation needs phase "switched"/);

  files = await rotated(files, 'beginRotation');
  let m = JSON.parse(files[CA_METADATA]);
  assert.deepEqual([m.generation, m.issuer, m.roots, m.phase], [2, 'intermediate-1', ['root-1', 'root-2'], 'rotating']);
  assert.ok(files['root-2.key.pem'] && files['intermediate-2.key.pem'] && files['intermediate-1.key.pem']);
  await refused('beginRotation', /next step: switchIssuer/);

  files = await rotated(files, 'switchIssuer');
  m = JSON.parse(files[CA_METADATA]);
  assert.deepEqual([m.generation, m.issuer, m.roots, m.phase], [3, 'intermediate-2', ['root-1', 'root-2'], 'switched']);

  const unpruned = await rotated(files, 'finishRotation', false);
  assert.equal(unpruned['root-1.key.pem'], undefined, 'retired keys always go');
  assert.equal(unpruned['intermediate-1.key.pem'], undefined);
  assert.ok(unpruned['root-1.cert.pem'], 'without prune the public certificates stay (the directory keeps them)');

  files = await rotated(files, 'finishRotation');
  m = JSON.parse(files[CA_METADATA]);
  assert.deepEqual([m.generation, m.issuer, m.roots, m.phase], [4, 'intermediate-2', ['root-2'], 'steady']);
  assert.deepEqual(Object.keys(files).sort(), [
    'ca.json',
    'intermediate-2.cert.pem',
    'intermediate-2.chain.pem',
    'intermediate-2.key.pem',
    'root-2.cert.pem',
    'root-2.key.pem',
  ]);
  // A second rotation starts from root-2 and makes root-5 (ids follow the generation).
  files = await rotated(files, 'beginRotation');
  assert.deepEqual(JSON.parse(files[CA_METADATA]).roots, ['root-2', 'root-5']);
});

test('checkCaMetadata names the bad field through the store-specific error', () => {
  const good = { version: 1, trustDomain: 'td', generation: 1, issuer: 'root-1', roots: ['root-1'], phase: 'steady', intermediate: false };
  const fail = (problem: string): Error => new Error(`Secret x/y: ${problem}`);
  assert.deepEqual(checkCaMetadata(good, fail), good);
  const cases: Array<[unknown, RegExp]> = [
    [[], /field "\(root\)" must be an object/],
    [{ ...good, version: 2 }, /field "version" must be 1/],
    [{ ...good, generation: 0 }, /field "generation" must be a positive integer/],
    [{ ...good, issuer: '../../etc/passwd' }, /field "issuer" must be an authority id/],
    [{ ...good, roots: [] }, /field "roots" must be a non-empty array/],
    [{ ...good, roots: ['intermediate-1'] }, /field "roots"/],
    [{ ...good, phase: 'done' }, /field "phase" must be steady \| rotating \| switched/],
    [{ ...good, intermediate: 'yes' }, /field "intermediate" must be a boolean/],
  ];
  for (const [value, pattern] of cases) assert.throws(() => checkCaMetadata(value, fail), pattern);
  assert.throws(() => parseCaMetadata('{', fail), /^Error: Secret x\/y: ca.json is not valid JSON/);
});
