// No fakes beyond the version objects: http2RuntimeProblem over process.versions-shaped inputs,
// the running Node's own versions included.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { http2RuntimeProblem } from '../../src/proxy';

function versions(node: string, nghttp2: string | undefined): NodeJS.ProcessVersions {
  return { ...process.versions, node, nghttp2 } as NodeJS.ProcessVersions;
}

test('releases with both fixes pass, the running Node included', () => {
  for (const [node, nghttp2] of [
    ['18.20.1', '1.61.0'],
    ['20.12.1', '1.61.0'],
    ['20.20.2', '1.61.0'],
    ['21.7.2', '1.61.0'],
    ['22.0.0', '1.61.0'],
    ['24.1.0', '1.64.0'],
  ]) {
    assert.equal(http2RuntimeProblem(versions(node, nghttp2)), undefined, `${node} / nghttp2 ${nghttp2}`);
  }
  assert.equal(http2RuntimeProblem(process.versions), undefined);
});

test('a Node.js release before the CONTINUATION fix of its line is named with the versions needed', () => {
  for (const node of ['18.20.0', '20.12.0', '20.8.1', '21.7.1', '19.9.0', '16.20.2']) {
    const problem = http2RuntimeProblem(versions(node, '1.61.0'));
    assert.ok(problem, `${node} passed`);
    assert.match(problem, new RegExp(`Node\\.js ${node.replace(/\./g, '\\.')} lacks the HTTP/2 CONTINUATION fix \\(CVE-2024-27983\\)`));
    assert.match(problem, /need Node\.js 18\.20\.1, 20\.12\.1, 21\.7\.2 or any 22 or later/);
  }
});

test('an nghttp2 without the CONTINUATION limit, or without the rapid-reset fix, is named with the version needed', () => {
  // Node built with --shared-nghttp2 reports the system library.
  const old = http2RuntimeProblem(versions('20.12.1', '1.59.0'));
  assert.match(String(old), /nghttp2 1\.59\.0 lacks the CONTINUATION-flood fix \(CVE-2024-28182\): need nghttp2 1\.61\.0 or later/);
  assert.doesNotMatch(String(old), /rapid-reset/);
  const older = http2RuntimeProblem(versions('20.12.1', '1.52.0'));
  assert.match(String(older), /nghttp2 1\.52\.0 lacks the rapid-reset fix \(CVE-2023-44487\) and the CONTINUATION-flood fix/);
  assert.match(String(older), /need nghttp2 1\.61\.0 or later \(1\.57\.0 for rapid reset alone\)/);
  // Both missing: both named, in one message.
  const both = http2RuntimeProblem(versions('20.5.0', '1.53.0'));
  assert.match(String(both), /^HTTP\/2 runtime unsafe for HBONE: nghttp2 1\.53\.0 lacks .*; Node\.js 20\.5\.0 lacks/);
});

test('versions it cannot read are a problem, not a pass', () => {
  assert.match(
    String(http2RuntimeProblem(versions('20.12.1', undefined))),
    /cannot read the nghttp2 version \(undefined\); need nghttp2 1\.61\.0 or later/,
  );
  assert.match(String(http2RuntimeProblem(versions('banana', '1.61.0'))), /cannot read the Node\.js version \("banana"\)/);
  assert.equal(http2RuntimeProblem(versions('v20.12.1', '1.61.0-DEV')), undefined);
});
