// FAKE API server: the TokenReviews here are answered by a function shaped like the API server's answers,
// to test parsing, refusals, the cache and the caps; the real TokenReview path is test/k8s/ca-service.test.ts.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import type { V1TokenReviewStatus } from '@kubernetes/client-node';
import {
  AGENT_AUTH_ERROR_CODES,
  AgentAuthError,
  MAX_TOKEN_BYTES,
  NODE_NAME_EXTRA,
  POD_NAME_EXTRA,
  POD_UID_EXTRA,
  TokenReviewAuthenticator,
  toGrpcStatus,
} from '../../src/controller/agent-authenticator';

const AGENT = 'system:serviceaccount:ferry-system:ferry-agent';
const PEER = 'ipv4:127.0.0.1:5555';

/** A JWS-shaped token carrying `claims` (the signature is not checked by anyone here: the reviewer decides). */
function jwt(claims: Record<string, unknown>): string {
  const part = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'RS256' })}.${part(claims)}.c2lnbmF0dXJl`;
}

function bearer(token: string): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  return metadata;
}

function agentStatus(node: string | undefined, extra: Record<string, string[]> = {}): V1TokenReviewStatus {
  return {
    authenticated: true,
    audiences: ['ferry-controller'],
    user: {
      username: AGENT,
      extra: {
        ...(node === undefined ? {} : { [NODE_NAME_EXTRA]: [node] }),
        [POD_NAME_EXTRA]: [`ferry-agent-${node ?? 'x'}`],
        [POD_UID_EXTRA]: ['1f2e'],
        ...extra,
      },
    },
  };
}

/** A reviewer over a table of token → answer, counting calls. */
function table(answers: Record<string, V1TokenReviewStatus | Error>): {
  review: (token: string, audiences: string[]) => Promise<V1TokenReviewStatus>;
  calls: string[];
} {
  const calls: string[] = [];
  return {
    calls,
    review: async (token, audiences) => {
      calls.push(token);
      assert.deepEqual(audiences, ['ferry-controller'], "the review asks for Ferry's audience");
      const answer = answers[token] ?? { authenticated: false, error: 'invalid bearer token' };
      if (answer instanceof Error) throw answer;
      return answer;
    },
  };
}

async function refusal(promise: Promise<unknown>, code: grpc.status, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof AgentAuthError, String(err));
    assert.equal(grpc.status[err.grpcCode], grpc.status[code], err.message);
    assert.match(err.message, pattern);
    assert.ok(err.message.startsWith(`agent at ${PEER}: `), err.message);
    assert.ok(err.code in AGENT_AUTH_ERROR_CODES);
    return true;
  });
}

test('a bound token of the agent account yields its node, pod and account', async () => {
  const token = jwt({ aud: ['ferry-controller'], exp: Math.floor(Date.now() / 1000) + 3600 });
  const auth = new TokenReviewAuthenticator({ review: table({ [token]: agentStatus('node-a') }).review });
  assert.deepEqual(await auth.authenticate(bearer(token), PEER), {
    node: 'node-a',
    subject: AGENT,
    podName: 'ferry-agent-node-a',
    podUid: '1f2e',
    namespace: 'ferry-system',
    serviceAccount: 'ferry-agent',
  });
});

test('every refusal names its cause and carries UNAUTHENTICATED or PERMISSION_DENIED', async () => {
  const wrongAudience = jwt({ aud: ['https://kubernetes.default.svc'] });
  const other = jwt({ aud: ['ferry-controller'], sub: 'other' });
  const unbound = jwt({ aud: ['ferry-controller'], sub: 'legacy' });
  const unscheduled = jwt({ aud: ['ferry-controller'], sub: 'unscheduled' });
  const twoNodes = jwt({ aud: ['ferry-controller'], sub: 'two' });
  const noAudienceEcho = jwt({ aud: ['ferry-controller'], sub: 'echo' });
  const { review } = table({
    [wrongAudience]: {
      authenticated: false,
      error:
        '[invalid bearer token, token audiences ["https://kubernetes.default.svc"] is invalid for the target audiences ["ferry-controller"]]',
    },
    [other]: { ...agentStatus('node-a'), user: { ...agentStatus('node-a').user, username: 'system:serviceaccount:shop:cart' } },
    [unbound]: { authenticated: true, audiences: ['ferry-controller'], user: { username: AGENT, extra: {} } },
    [unscheduled]: agentStatus(undefined),
    [twoNodes]: agentStatus('node-a', { [NODE_NAME_EXTRA]: ['node-a', 'node-b'] }),
    [noAudienceEcho]: { ...agentStatus('node-a'), audiences: [] },
  });
  const auth = new TokenReviewAuthenticator({ review });
  await refusal(auth.authenticate(new grpc.Metadata(), PEER), grpc.status.UNAUTHENTICATED, /no token/);
  const basic = new grpc.Metadata();
  basic.set('authorization', 'Basic dXNlcjpwYXNz');
  await refusal(auth.authenticate(basic, PEER), grpc.status.UNAUTHENTICATED, /not "Bearer <token>"/);
  const two = bearer('a');
  two.add('authorization', 'Bearer b');
  await refusal(auth.authenticate(two, PEER), grpc.status.UNAUTHENTICATED, /2 authorization values/);
  await refusal(auth.authenticate(bearer('a"b'), PEER), grpc.status.UNAUTHENTICATED, /characters a token cannot have/);
  await refusal(auth.authenticate(bearer('x'.repeat(MAX_TOKEN_BYTES + 100)), PEER), grpc.status.UNAUTHENTICATED, /at most 8192/);
  await refusal(
    auth.authenticate(bearer('made.up.token'), PEER),
    grpc.status.UNAUTHENTICATED,
    /did not authenticate the token: invalid bearer token/,
  );
  await refusal(
    auth.authenticate(bearer(wrongAudience), PEER),
    grpc.status.UNAUTHENTICATED,
    /wrong audience: the token is for \[https:\/\/kubernetes.default.svc\], not "ferry-controller"/,
  );
  await refusal(
    auth.authenticate(bearer(noAudienceEcho), PEER),
    grpc.status.UNAUTHENTICATED,
    /wrong audience: the TokenReview did not confirm/,
  );
  await refusal(
    auth.authenticate(bearer(other), PEER),
    grpc.status.PERMISSION_DENIED,
    /not the agent's service account: the token is for "system:serviceaccount:shop:cart", expected "system:serviceaccount:ferry-system:ferry-agent"/,
  );
  await refusal(auth.authenticate(bearer(unbound), PEER), grpc.status.PERMISSION_DENIED, /no node binding: .* not bound to a pod/);
  await refusal(auth.authenticate(bearer(unscheduled), PEER), grpc.status.PERMISSION_DENIED, /no node binding: .* not on a node/);
  await refusal(auth.authenticate(bearer(twoNodes), PEER), grpc.status.PERMISSION_DENIED, /no node binding/);
  assert.equal(auth.stats().refused, 12);
  assert.equal(auth.stats().cached, 0, 'refusals are not cached');
});

test('the agent account is configurable', async () => {
  const token = jwt({ aud: ['mesh'] });
  const status = agentStatus('n1');
  status.audiences = ['mesh'];
  status.user!.username = 'system:serviceaccount:mesh:node-agent';
  const review = async (_token: string, audiences: string[]): Promise<V1TokenReviewStatus> => {
    assert.deepEqual(audiences, ['mesh']);
    return status;
  };
  const auth = new TokenReviewAuthenticator({ review, audience: 'mesh', agentServiceAccount: { namespace: 'mesh', name: 'node-agent' } });
  const identity = await auth.authenticate(bearer(token), PEER);
  assert.deepEqual([identity.namespace, identity.serviceAccount, identity.node], ['mesh', 'node-agent', 'n1']);
});

test('a positive review is reused until the earlier of the cache TTL and the token exp, and shared by concurrent calls', async () => {
  let now = 1_000_000_000_000;
  const shortLived = jwt({ aud: ['ferry-controller'], exp: now / 1000 + 5 });
  const longLived = jwt({ aud: ['ferry-controller'], exp: now / 1000 + 3600 });
  const { review, calls } = table({ [shortLived]: agentStatus('node-a'), [longLived]: agentStatus('node-b') });
  const auth = new TokenReviewAuthenticator({ review, cacheTtlMs: 30_000, now: () => now });
  // 20 concurrent first calls: one review.
  const identities = await Promise.all(Array.from({ length: 20 }, () => auth.authenticate(bearer(longLived), PEER)));
  assert.ok(identities.every((i) => i.node === 'node-b'));
  assert.equal(calls.length, 1);
  assert.equal(auth.stats().joined, 19);
  await auth.authenticate(bearer(shortLived), PEER);
  assert.equal(calls.length, 2);
  now += 4_000;
  await auth.authenticate(bearer(shortLived), PEER);
  await auth.authenticate(bearer(longLived), PEER);
  assert.equal(calls.length, 2, 'both cached');
  now += 2_000; // past the short token's exp, inside the TTL
  await auth.authenticate(bearer(shortLived), PEER);
  assert.equal(calls.length, 3, 'an expired token is reviewed again (and the API server decides)');
  await auth.authenticate(bearer(longLived), PEER);
  assert.equal(calls.length, 3);
  now += 30_000; // past the TTL
  await auth.authenticate(bearer(longLived), PEER);
  assert.equal(calls.length, 4);
  assert.equal(auth.stats().cacheHits, 3);
  // The cached identity is a copy: a caller changing it changes nothing for the next.
  const identity = await auth.authenticate(bearer(longLived), PEER);
  identity.node = 'elsewhere';
  assert.equal((await auth.authenticate(bearer(longLived), PEER)).node, 'node-b');
});

test('the cache is bounded, dropping the least recently used token first', async () => {
  const tokens = Array.from({ length: 5 }, (_, i) => jwt({ aud: ['ferry-controller'], n: i }));
  const { review, calls } = table(Object.fromEntries(tokens.map((t, i) => [t, agentStatus(`node-${i}`)])));
  const auth = new TokenReviewAuthenticator({ review, cacheSize: 3 });
  for (const t of tokens.slice(0, 3)) await auth.authenticate(bearer(t), PEER);
  await auth.authenticate(bearer(tokens[0]), PEER); // 0 is now the most recent
  await auth.authenticate(bearer(tokens[3]), PEER); // evicts 1
  assert.equal(auth.stats().cached, 3);
  calls.length = 0;
  await auth.authenticate(bearer(tokens[0]), PEER);
  await auth.authenticate(bearer(tokens[2]), PEER);
  assert.equal(calls.length, 0);
  await auth.authenticate(bearer(tokens[1]), PEER);
  assert.equal(calls.length, 1, 'the evicted token is reviewed again');
});

test('an API server failure is UNAVAILABLE (the agent retries), not a refusal, and never echoes the token', async () => {
  const token = jwt({ aud: ['ferry-controller'], secret: 'do-not-print' });
  const apiError = Object.assign(new Error(`HTTP-Code: 403\nMessage: forbidden\nBody: ${token}`), {
    code: 403,
    body: JSON.stringify({
      kind: 'Status',
      message:
        'tokenreviews.authentication.k8s.io is forbidden: User "system:serviceaccount:ferry-system:ferry-controller" cannot create resource "tokenreviews"',
    }),
  });
  const auth = new TokenReviewAuthenticator({ review: table({ [token]: apiError }).review });
  await assert.rejects(auth.authenticate(bearer(token), PEER), (err: unknown) => {
    assert.ok(err instanceof AgentAuthError);
    assert.equal(err.code, 'FERRY_ERR_AGENT_AUTH_REVIEW');
    assert.equal(err.grpcCode, grpc.status.UNAVAILABLE);
    assert.match(err.message, /the TokenReview failed: HTTP 403: tokenreviews.authentication.k8s.io is forbidden/);
    assert.ok(!err.message.includes(token.split('.')[1]), 'the token is not in the message');
    return true;
  });
  const slow = new TokenReviewAuthenticator({ review: () => new Promise(() => {}), reviewTimeoutMs: 50 });
  await refusalOf(slow.authenticate(bearer(token), PEER), /the TokenReview took over 50 ms/);
});

async function refusalOf(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof AgentAuthError);
    assert.equal(err.grpcCode, grpc.status.UNAVAILABLE);
    assert.match(err.message, pattern);
    return true;
  });
}

test('reviews in flight are capped and the queue behind them is bounded', async () => {
  let running = 0;
  let peak = 0;
  const release: Array<() => void> = [];
  const review = async (token: string): Promise<V1TokenReviewStatus> => {
    running += 1;
    peak = Math.max(peak, running);
    await new Promise<void>((resolve) => release.push(resolve));
    running -= 1;
    return token.startsWith('good') ? agentStatus('node-a') : { authenticated: false, error: 'invalid bearer token' };
  };
  const auth = new TokenReviewAuthenticator({ review, maxConcurrentReviews: 2, maxQueuedReviews: 3 });
  const calls = Array.from({ length: 5 }, (_, i) =>
    auth.authenticate(bearer(`${i === 0 ? 'good' : 'bad'}-${i}`), PEER).then(
      () => 'ok',
      (e: Error) => e.message,
    ),
  );
  await refusalOf(auth.authenticate(bearer('bad-overflow'), PEER), /3 TokenReviews are already waiting/);
  // Let them finish one at a time; never more than two at once.
  while (release.length > 0 || running > 0) {
    release.shift()?.();
    await new Promise((resolve) => setImmediate(resolve));
  }
  const results = await Promise.all(calls);
  assert.equal(peak, 2);
  assert.equal(results[0], 'ok');
  assert.ok(
    results.slice(1).every((r) => /did not authenticate/.test(r)),
    results.join('\n'),
  );
  // The slots were all given back: a new review runs at once.
  const after = auth.authenticate(bearer('good-again'), PEER);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(running, 1);
  release.shift()!();
  assert.equal((await after).node, 'node-a');
});

test('toGrpcStatus keeps the status of errors that carry one and hides everything else', () => {
  const refused = new AgentAuthError('FERRY_ERR_AGENT_AUTH_REFUSED', grpc.status.PERMISSION_DENIED, 'agent at x: not the agent');
  assert.deepEqual(
    [toGrpcStatus(refused).code, toGrpcStatus(refused).details],
    [grpc.status.PERMISSION_DENIED, 'agent at x: not the agent'],
  );
  const internal = toGrpcStatus(new Error('ENOENT /etc/ferry/secret-path'));
  assert.deepEqual([internal.code, internal.details], [grpc.status.INTERNAL, 'internal error']);
});
