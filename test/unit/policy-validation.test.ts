// Tests for validateAuthorizationPolicy / validatePeerAuthentication: the normalised form, and every problem with
// its exact path from the document root and a message saying what was found and what was expected.
import { test, describe } from 'node:test';
import * as assert from 'node:assert/strict';
import {
  POLICY_ERROR_CODES,
  formatPolicyPath,
  validateAuthorizationPolicy,
  validatePeerAuthentication,
  type PolicyProblem,
} from '../../src/policy';

const ap = (spec: unknown, metadata: Record<string, unknown> = { name: 'p', namespace: 'shop' }): Record<string, unknown> => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata,
  spec,
});
const peer = (spec: unknown, metadata: Record<string, unknown> = { name: 'p', namespace: 'shop' }): Record<string, unknown> => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'PeerAuthentication',
  metadata,
  spec,
});

/** Problems as `path: message` lines, easy to compare and to read in a failure. */
const lines = (problems: PolicyProblem[]): string[] => problems.map((p) => `${formatPolicyPath(p.path)}: ${p.message}`);

describe('AuthorizationPolicy: normalised form', () => {
  test('defaults, numbers for ports, completed service accounts, plain JSON', () => {
    const result = validateAuthorizationPolicy({
      apiVersion: 'security.istio.io/v1beta1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'web.allow', annotations: { 'istio.io/dry-run': 'true', team: 'a' } },
      spec: {
        selector: { matchLabels: { app: 'web' } },
        rules: [
          {
            from: [{ source: { serviceAccounts: ['client', 'legacy/job'], ipBlocks: ['10.0.0.0/8'] } }],
            to: [{ operation: { ports: ['8080', 9090] } }],
            when: [{ key: 'destination.port', notValues: ['22'] }],
          },
        ],
      },
    });
    assert.deepEqual(result.problems, []);
    assert.deepEqual(result.warnings, []);
    assert.deepEqual(result.value, {
      namespace: 'default',
      name: 'web.allow',
      action: 'ALLOW',
      dryRun: true,
      selector: { app: 'web' },
      rules: [
        {
          from: [{ serviceAccounts: ['default/client', 'legacy/job'], ipBlocks: ['10.0.0.0/8'] }],
          to: [{ ports: [8080, 9090] }],
          when: [{ key: 'destination.port', notValues: ['22'] }],
        },
      ],
    });
    assert.deepEqual(JSON.parse(JSON.stringify(result.value)), result.value);
  });

  test('an empty spec, or none, is allow-nothing; an empty selector is no selector', () => {
    for (const spec of [{}, undefined, { selector: {} }, { selector: { matchLabels: {} } }]) {
      const result = validateAuthorizationPolicy(ap(spec));
      assert.deepEqual(result.problems, []);
      assert.deepEqual(result.value, { namespace: 'shop', name: 'p', action: 'ALLOW', dryRun: false, rules: [] });
    }
  });

  test('a DENY without rules is accepted with a warning (Istio rejects it: it can never match)', () => {
    const result = validateAuthorizationPolicy(ap({ action: 'DENY' }));
    assert.deepEqual(result.problems, []);
    assert.deepEqual(result.warnings, [
      'AuthorizationPolicy shop/p: spec.rules: a DENY policy without rules never matches, so it has no effect; add `rules: [{}]` to deny every connection',
    ]);
  });

  test('a CIDR with host bits set is its network, with a warning naming the policy and field', () => {
    const result = validateAuthorizationPolicy(ap({ rules: [{ from: [{ source: { ipBlocks: ['10.1.2.3/16'] } }] }] }));
    assert.deepEqual(result.problems, []);
    assert.deepEqual(result.warnings, [
      'AuthorizationPolicy shop/p: spec.rules[0].from[0].source.ipBlocks[0]: "10.1.2.3/16" has host bits set; using 10.1.0.0/16',
    ]);
    // Kept as written, as Istio keeps it; PolicySet reads it with the same parser.
    assert.deepEqual(result.value?.rules[0]?.from?.[0]?.ipBlocks, ['10.1.2.3/16']);
  });

  test('IPv4-mapped addresses and networks are IPv4, with a warning; in conditions too', () => {
    const result = validateAuthorizationPolicy(
      ap({
        rules: [
          {
            from: [{ source: { notIpBlocks: ['::ffff:10.0.0.1', '::ffff:10.0.0.0/104'], ipBlocks: ['::ffff:10.9.9.9/120'] } }],
            when: [{ key: 'source.ip', values: ['::ffff:0:0/96'] }],
          },
        ],
      }),
    );
    assert.deepEqual(result.problems, []);
    const at = 'AuthorizationPolicy shop/p: spec.rules[0]';
    assert.deepEqual(result.warnings, [
      `${at}.from[0].source.ipBlocks[0]: "::ffff:10.9.9.9/120" has host bits set and is IPv4-mapped IPv6, matched as IPv4; using 10.9.9.0/24`,
      `${at}.from[0].source.notIpBlocks[0]: "::ffff:10.0.0.1" is IPv4-mapped IPv6, matched as IPv4; using 10.0.0.1/32`,
      `${at}.from[0].source.notIpBlocks[1]: "::ffff:10.0.0.0/104" is IPv4-mapped IPv6, matched as IPv4; using 10.0.0.0/8`,
      `${at}.when[0].values[0]: "::ffff:0:0/96" is IPv4-mapped IPv6, matched as IPv4; using 0.0.0.0/0`,
    ]);
  });
});

describe('AuthorizationPolicy: problems', () => {
  const cases: { name: string; doc: unknown; problems: string[] }[] = [
    {
      name: 'unknown field, with its path and the fields that exist',
      doc: ap({ rules: [{ from: [{ source: { principal: ['x'] } }] }] }),
      problems: [
        'spec.rules[0].from[0].source.principal: unknown field (Ferry does not support it); expected one of: principals, notPrincipals, requestPrincipals, notRequestPrincipals, namespaces, notNamespaces, serviceAccounts, notServiceAccounts, ipBlocks, notIpBlocks, remoteIpBlocks, notRemoteIpBlocks',
        'spec.rules[0].from[0].source: is empty; expected at least one of: principals, notPrincipals, requestPrincipals, notRequestPrincipals, namespaces, notNamespaces, serviceAccounts, notServiceAccounts, ipBlocks, notIpBlocks, remoteIpBlocks, notRemoteIpBlocks',
      ],
    },
    {
      name: 'bad CIDRs and addresses',
      doc: ap({
        rules: [
          {
            from: [
              {
                source: {
                  ipBlocks: ['10.0.0.0/8', '10.0.0.0/33', 'not-an-ip', 'fe80::1%eth0', 'fd00::/129', '10.0.0.0/08'],
                  notIpBlocks: ['::ffff:10.0.0.0/95', '10.0.0.0/'],
                },
              },
            ],
          },
        ],
      }),
      problems: [
        'spec.rules[0].from[0].source.ipBlocks[1]: "10.0.0.0/33" has a prefix length outside 0..32; expected an IP address or CIDR, e.g. 10.0.0.0/8 or fd00::/8',
        'spec.rules[0].from[0].source.ipBlocks[2]: "not-an-ip" is not an IPv4 or IPv6 address or CIDR; expected an IP address or CIDR, e.g. 10.0.0.0/8 or fd00::/8',
        'spec.rules[0].from[0].source.ipBlocks[3]: "fe80::1%eth0" has an IPv6 zone index (%eth0); zone indexes are not allowed; expected an IP address or CIDR, e.g. 10.0.0.0/8 or fd00::/8',
        'spec.rules[0].from[0].source.ipBlocks[4]: "fd00::/129" has a prefix length outside 0..128; expected an IP address or CIDR, e.g. 10.0.0.0/8 or fd00::/8',
        'spec.rules[0].from[0].source.ipBlocks[5]: "10.0.0.0/08" has a prefix length that is not a number in 0..32; expected an IP address or CIDR, e.g. 10.0.0.0/8 or fd00::/8',
        'spec.rules[0].from[0].source.notIpBlocks[0]: "::ffff:10.0.0.0/95" has a prefix length outside 96..128 (an IPv4-mapped address counts IPv6 bits: /96 is IPv4 /0); expected an IP address or CIDR, e.g. 10.0.0.0/8 or fd00::/8',
        'spec.rules[0].from[0].source.notIpBlocks[1]: "10.0.0.0/" has a prefix length that is not a number in 0..32; expected an IP address or CIDR, e.g. 10.0.0.0/8 or fd00::/8',
      ],
    },
    {
      name: 'bad ports',
      doc: ap({ rules: [{ to: [{ operation: { ports: ['8080', '0', 'http', 70000], notPorts: [true] } }] }] }),
      problems: [
        'spec.rules[0].to[0].operation.notPorts[0]: is a boolean (true); expected a port from 1 to 65535, as Istio writes it (a string such as "8080") or a number',
        'spec.rules[0].to[0].operation.ports[1]: "0" is not a port; expected a port from 1 to 65535, as Istio writes it (a string such as "8080") or a number',
        'spec.rules[0].to[0].operation.ports[2]: "http" is not a port; expected a port from 1 to 65535, as Istio writes it (a string such as "8080") or a number',
        'spec.rules[0].to[0].operation.ports[3]: 70000 is not a port; expected a port from 1 to 65535, as Istio writes it (a string such as "8080") or a number',
      ],
    },
    {
      name: 'CUSTOM action',
      doc: ap({ action: 'CUSTOM', provider: { name: 'ext-authz' }, rules: [{}] }),
      problems: ['spec.action: CUSTOM is not supported (Ferry has no external authorization providers); expected ALLOW, DENY or AUDIT'],
    },
    {
      name: 'unknown action, provider without CUSTOM',
      doc: ap({ action: 'allow', provider: { name: 'x' } }),
      problems: [
        'spec.action: "allow" is not supported; expected ALLOW, DENY or AUDIT',
        'spec.provider: is only used with action CUSTOM, which is not supported; expected no provider with action allow',
      ],
    },
    {
      name: 'targetRef and targetRefs',
      doc: ap({ targetRef: { kind: 'Service', name: 'web' }, targetRefs: [], rules: [{}] }),
      problems: [
        'spec.targetRef: is not supported: Ferry attaches policies to workloads (targetRef attaches them to a Gateway, Service or waypoint); expected spec.selector',
        'spec.targetRefs: is not supported: Ferry attaches policies to workloads (targetRef attaches them to a Gateway, Service or waypoint); expected spec.selector',
      ],
    },
    {
      name: 'patterns, schemes and empty values',
      doc: ap({ rules: [{ from: [{ source: { principals: ['spiffe://cluster.local/ns/a/sa/b', 'a*b', ''], namespaces: ['**'] } }] }] }),
      problems: [
        'spec.rules[0].from[0].source.principals[0]: "spiffe://cluster.local/ns/a/sa/b" includes the spiffe:// scheme; expected the principal without it, e.g. "cluster.local/ns/a/sa/b"',
        'spec.rules[0].from[0].source.principals[1]: "a*b" has a \'*\' that is not alone, leading or trailing (Istio matches exact values, "*", "prefix*" and "*suffix"); expected a principal such as cluster.local/ns/default/sa/web, "*", or a prefix*/ *suffix',
        'spec.rules[0].from[0].source.principals[2]: is empty; expected a value',
        'spec.rules[0].from[0].source.namespaces[0]: "**" has a \'*\' that is not alone, leading or trailing (Istio matches exact values, "*", "prefix*" and "*suffix"); expected a namespace name, "*", or a prefix*/ *suffix',
      ],
    },
    {
      name: 'serviceAccounts with principals, and a malformed one',
      doc: ap({ rules: [{ from: [{ source: { principals: ['*'], serviceAccounts: ['a/b/c'] } }] }] }),
      problems: [
        'spec.rules[0].from[0].source.serviceAccounts[0]: "a/b/c" is not valid; expected NAMESPACE/SERVICE-ACCOUNT, e.g. shop/web',
        'spec.rules[0].from[0].source.serviceAccounts: cannot be combined with principals or namespaces in one source (as in Istio); expected a separate from entry',
      ],
    },
    {
      name: 'empty from, to and operation; missing source',
      doc: ap({ rules: [{ from: [], to: [{ operation: {} }] }, { from: [{}] }] }),
      problems: [
        'spec.rules[1].from[0].source: is required; expected a source {principals, namespaces, ipBlocks, …}',
        'spec.rules[0].from: is an empty list; expected at least one entry, or no from at all to match any source',
        'spec.rules[0].to[0].operation: is empty; expected at least one of: hosts, notHosts, ports, notPorts, methods, notMethods, paths, notPaths',
        'spec.rules[1].from[0].source: is empty; expected at least one of: principals, notPrincipals, requestPrincipals, notRequestPrincipals, namespaces, notNamespaces, serviceAccounts, notServiceAccounts, ipBlocks, notIpBlocks, remoteIpBlocks, notRemoteIpBlocks',
      ],
    },
    {
      name: 'when: unknown, rejected and malformed keys, values',
      doc: ap({
        rules: [
          {
            when: [
              { key: 'source.pod', values: ['x'] },
              { key: 'destination.labels[app]', values: ['x'] },
              { key: 'request.headers', values: ['x'] },
              { key: 'source.ip', values: ['1.2.3.4/40'] },
              { key: 'destination.port', notValues: ['eighty'] },
              { key: 'source.namespace' },
            ],
          },
        ],
      }),
      problems: [
        'spec.rules[0].when[0].key: "source.pod" is not a known attribute; expected one of: source.ip, source.namespace, source.principal, destination.ip, destination.port, remote.ip, request.auth.principal, request.auth.audiences, request.auth.presenter, connection.sni, request.headers[NAME], request.auth.claims[NAME]',
        'spec.rules[0].when[1].key: "destination.labels[app]" is replaced by spec.selector in Istio security.istio.io/v1',
        'spec.rules[0].when[2].key: "request.headers" has no [NAME] part; expected e.g. request.headers[NAME]',
        'spec.rules[0].when[3].values[0]: "1.2.3.4/40" has a prefix length outside 0..32; expected an IP address or CIDR, e.g. 10.0.0.0/8 or fd00::/8',
        'spec.rules[0].when[4].notValues[0]: "eighty" is not a port; expected a port from 1 to 65535',
        'spec.rules[0].when[5]: has neither values nor notValues for key source.namespace; expected at least one of them',
      ],
    },
    {
      name: 'metadata, apiVersion and kind',
      doc: {
        apiVersion: 'security.istio.io/v1alpha1',
        kind: 'AuthorizationPolicy',
        // uid is ObjectMeta's (the API server sets it); namepsace is a typo, which would put the policy in default.
        metadata: {
          name: 'Bad_Name',
          namespace: 'shop',
          uid: 'x',
          namepsace: 'shop',
          annotations: { 'istio.io/dry-run': 'yes', 'ferry.dev/dryrun': 'true' },
        },
        spec: {},
      },
      problems: [
        'apiVersion: "security.istio.io/v1alpha1" is not supported; expected security.istio.io/v1 (or security.istio.io/v1beta1)',
        'metadata.namepsace: unknown field (Ferry does not support it); expected one of: name, namespace, labels, annotations, generateName, uid, resourceVersion, generation, creationTimestamp, deletionTimestamp, deletionGracePeriodSeconds, ownerReferences, finalizers, managedFields, selfLink',
        "metadata.name: \"Bad_Name\" is not valid; expected a policy name: a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253 characters)",
        'metadata.annotations["ferry.dev/dryrun"]: unknown Ferry annotation; expected one of: ferry.dev/dry-run',
        'metadata.annotations["istio.io/dry-run"]: "yes" is not valid; expected "true" or "false"',
      ],
    },
    {
      name: "limits Istio's CRD sets: rules, from entries, service accounts and their length",
      doc: ap({
        rules: [
          {
            from: [
              { source: { serviceAccounts: Array.from({ length: 17 }, (_, i) => `sa-${i}`) } },
              { source: { notServiceAccounts: [`shop/${'a'.repeat(316)}`] } },
            ],
          },
          { from: Array.from({ length: 513 }, () => ({ source: { namespaces: ['a'] } })) },
          ...Array.from({ length: 511 }, () => ({})),
        ],
      }),
      problems: [
        'spec.rules: must NOT have more than 512 items; expected a list of rules {from, to, when}',
        'spec.rules[0].from[0].source.serviceAccounts: must NOT have more than 16 items; expected a list of at most 16 service accounts',
        `spec.rules[0].from[1].source.notServiceAccounts[0]: "shop/${'a'.repeat(316)}" is 321 characters long; expected a service account: NAMESPACE/NAME, or NAME in the policy's namespace (at most 320 characters)`,
        'spec.rules[1].from: must NOT have more than 512 items; expected a list of {source}',
      ],
    },
    {
      name: 'more than 4096 matchLabels',
      doc: ap({ selector: { matchLabels: Object.fromEntries(Array.from({ length: 4097 }, (_, i) => [`k${i}`, 'v'])) } }),
      problems: ['spec.selector.matchLabels: must NOT have more than 4096 properties; expected matchLabels: a mapping of keys to strings'],
    },
    {
      name: 'not a mapping',
      doc: ['a list'],
      problems: ['(root): is a list; expected an AuthorizationPolicy mapping with apiVersion, kind, metadata and spec'],
    },
    {
      name: 'wrong types',
      doc: ap({ rules: { from: [] }, selector: { matchLabels: { app: 1 } } }),
      problems: [
        "spec.selector.matchLabels.app: is an integer (1); expected a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        'spec.rules: is a mapping; expected a list of rules {from, to, when}',
      ],
    },
  ];

  for (const c of cases) {
    test(c.name, () => {
      const result = validateAuthorizationPolicy(c.doc);
      assert.deepEqual(
        lines(result.problems).map((l) => (l.startsWith(':') ? `(root)${l}` : l)),
        c.problems,
      );
      assert.equal(result.value, undefined);
    });
  }

  test('paths are segment lists from the document root, list positions as numbers', () => {
    const result = validateAuthorizationPolicy(ap({ rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/8', 'x'] } }] }] }));
    assert.deepEqual(
      result.problems.map((p) => p.path),
      [['spec', 'rules', 0, 'from', 0, 'source', 'ipBlocks', 1]],
    );
  });
});

describe('PeerAuthentication', () => {
  test('normalised form: mode, port-level settings sorted by port, selector', () => {
    const result = validatePeerAuthentication(
      peer({
        selector: { matchLabels: { app: 'db' } },
        mtls: { mode: 'STRICT' },
        portLevelMtls: { 9090: { mode: 'DISABLE' }, 5432: { mode: 'PERMISSIVE' }, 8080: {} },
      }),
    );
    assert.deepEqual(result.problems, []);
    assert.deepEqual(result.value, {
      namespace: 'shop',
      name: 'p',
      selector: { app: 'db' },
      mode: 'STRICT',
      portLevelMtls: [
        { port: 5432, mode: 'PERMISSIVE' },
        { port: 8080, mode: 'UNSET' },
        { port: 9090, mode: 'DISABLE' },
      ],
    });
  });

  test('no mtls is UNSET', () => {
    assert.deepEqual(validatePeerAuthentication(peer({})).value, { namespace: 'shop', name: 'p', mode: 'UNSET', portLevelMtls: [] });
  });

  const cases: { name: string; doc: unknown; problems: string[] }[] = [
    {
      name: 'portLevelMtls without a selector',
      doc: peer({ mtls: { mode: 'STRICT' }, portLevelMtls: { 8080: { mode: 'PERMISSIVE' } } }),
      problems: [
        'spec.portLevelMtls: is only allowed together with spec.selector.matchLabels (as in Istio, a namespace-wide or mesh-wide PeerAuthentication cannot set port-level mTLS); expected a selector, or no portLevelMtls',
      ],
    },
    {
      name: 'bad modes and ports',
      doc: peer({
        selector: { matchLabels: { app: 'db' } },
        mtls: { mode: 'strict' },
        portLevelMtls: { 0: { mode: 'STRICT' }, http: { mode: 'STRICT' }, 80: { mode: 'X', port: 1 } },
      }),
      problems: [
        'spec.mtls.mode: "strict" is not supported; expected STRICT, PERMISSIVE, DISABLE or UNSET',
        'spec.portLevelMtls.http: is not a valid key; expected a port number from 1 to 65535',
        'spec.portLevelMtls["80"].port: unknown field (Ferry does not support it); expected one of: mode',
        'spec.portLevelMtls["80"].mode: "X" is not supported; expected STRICT, PERMISSIVE, DISABLE or UNSET',
        'spec.portLevelMtls["0"]: 0 is out of range; expected a port from 1 to 65535',
      ],
    },
    {
      name: 'empty portLevelMtls, dry-run annotation',
      doc: peer(
        { selector: { matchLabels: { app: 'db' } }, portLevelMtls: {} },
        { name: 'p', annotations: { 'istio.io/dry-run': 'true' } },
      ),
      problems: [
        'metadata.annotations["istio.io/dry-run"]: dry-run applies to AuthorizationPolicy only (as in Istio); expected no dry-run annotation on a PeerAuthentication',
        'spec.portLevelMtls: is empty; expected at least one PORT: {mode: …} entry',
      ],
    },
    {
      name: 'wrong kind',
      doc: { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'p' } },
      problems: ['kind: "AuthorizationPolicy" is not supported; expected PeerAuthentication'],
    },
  ];

  for (const c of cases) {
    test(c.name, () => {
      const result = validatePeerAuthentication(c.doc);
      assert.deepEqual(lines(result.problems), c.problems);
      assert.equal(result.value, undefined);
    });
  }
});

test('the error registry documents its code', () => {
  assert.deepEqual(Object.keys(POLICY_ERROR_CODES), ['FERRY_ERR_POLICY_INVALID']);
});
