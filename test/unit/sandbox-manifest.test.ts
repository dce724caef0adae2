// Tests for src/sandbox/manifest.ts: the demo parses, defaults are filled in, and every kind of bad input is
// reported with its file, document, object and field path, all problems at once.
import { test, describe } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  loadManifests,
  parseManifests,
  NODE_NAME_MAX,
  NAMESPACE_NAME_MAX,
  POD_QUALIFIED_NAME_MAX,
  type SandboxManifest,
} from '../../src/sandbox/manifest';
import { ManifestError, PlanError, SandboxArgumentError, SANDBOX_ERROR_CODES } from '../../src/sandbox/errors';

/** The repository root, found from this file whether it runs from dist/ or another output directory. */
function repoRoot(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'examples', 'demo.yaml')) && fs.existsSync(path.join(dir, 'package.json'))) return dir;
  }
  throw new Error(`no repository root above ${__dirname}`);
}
const ROOT = repoRoot();
const example = (name: string): string => path.join(ROOT, 'examples', name);

/** Parses one in-memory file and returns the ManifestError it must throw. */
function problemsOf(text: string, file = 'input.yaml'): ManifestError {
  try {
    parseManifests([{ file, text }]);
  } catch (error) {
    assert.ok(error instanceof ManifestError, `expected ManifestError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the manifests to be rejected');
}

function parse(text: string): SandboxManifest {
  return parseManifests([{ file: 'input.yaml', text }]);
}

/** Asserts the error lists exactly these lines (after its header), in this order. */
function assertLines(error: ManifestError, lines: string[]): void {
  assert.deepEqual(error.message.split('\n').slice(1), lines);
  assert.equal(error.problems.length, lines.length);
}

const POD = (name: string, extra = '', spec = ''): string => `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
${extra}spec:
  nodeName: node-a
${spec}  containers:
    - name: app
      command: ["sleep", "infinity"]
`;

describe('the demo', () => {
  test('parses into the documented model without warnings', async () => {
    const manifest = await loadManifests([example('demo.yaml')]);
    assert.deepEqual(manifest.nodes, [{ name: 'node-a' }, { name: 'node-b' }]);
    assert.deepEqual(
      manifest.namespaces.map((n) => [n.name, n.meshEnabled]),
      [
        ['shop', true],
        ['legacy', false],
      ],
    );
    assert.deepEqual(
      manifest.pods.map((p) => [`${p.namespace}/${p.name}`, p.nodeName, p.meshEnabled]),
      [
        ['shop/web', 'node-a', true],
        ['shop/cart', 'node-b', true],
        ['shop/cart-2', 'node-a', true],
        ['shop/client', 'node-a', true],
        ['legacy/client', 'node-b', false],
      ],
    );
    const web = manifest.pods[0];
    assert.ok(web !== undefined);
    assert.equal(web.containers.length, 1);
    assert.deepEqual(web.containers[0]?.command, ['node', '-e']);
    assert.match(web.containers[0]?.args[0] ?? '', /listen\(8080, '0\.0\.0\.0'\)/);
    assert.deepEqual(web.containers[0]?.env, { POD_NAME: 'web' });
    assert.deepEqual(web.containers[0]?.ports, [{ name: 'http', containerPort: 8080 }]);
    assert.deepEqual(manifest.pods[3]?.containers[0]?.command, ['sleep', 'infinity']);
    assert.deepEqual(manifest.services, [
      { namespace: 'shop', name: 'web', selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
      { namespace: 'shop', name: 'cart', selector: { app: 'cart' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
    ]);
    assert.deepEqual(manifest.warnings, []);
  });

  test('every server pod tells its own name through POD_NAME', async () => {
    const manifest = await loadManifests([example('demo.yaml')]);
    for (const pod of manifest.pods.filter((p) => p.labels.app !== undefined)) {
      assert.equal(pod.containers[0]?.env.POD_NAME, pod.name);
    }
  });
});

describe('defaults', () => {
  test('two nodes, the default namespace and service account, empty args and env', () => {
    const manifest = parse(POD('solo'));
    assert.deepEqual(manifest.nodes, [{ name: 'node-a' }, { name: 'node-b' }]);
    assert.deepEqual(manifest.namespaces, [{ name: 'default', labels: {}, annotations: {}, meshEnabled: false }]);
    assert.deepEqual(manifest.pods, [
      {
        namespace: 'default',
        name: 'solo',
        nodeName: 'node-a',
        serviceAccount: 'default',
        labels: {},
        annotations: {},
        meshEnabled: false,
        containers: [{ name: 'app', command: ['sleep', 'infinity'], args: [], env: {}, ports: [] }],
        excludeOutboundPorts: [],
        excludeOutboundCidrs: [],
      },
    ]);
  });

  test('with a single declared node, nodeName may be left out', () => {
    const manifest = parse(`apiVersion: ferry.dev/v1alpha1
kind: Node
metadata: {name: only}
---
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers: [{name: c, command: [sleep]}]
`);
    assert.deepEqual(manifest.nodes, [{ name: 'only' }]);
    assert.equal(manifest.pods[0]?.nodeName, 'only');
  });

  test('targetPort defaults to port; the default namespace is listed only when used', () => {
    const manifest = parse(`apiVersion: v1
kind: Namespace
metadata: {name: a}
---
apiVersion: v1
kind: Service
metadata: {name: s, namespace: a}
spec:
  ports: [{port: 8080}]
`);
    assert.deepEqual(manifest.services[0]?.ports, [{ port: 8080, targetPort: 8080 }]);
    assert.deepEqual(manifest.services[0]?.selector, {});
    assert.deepEqual(
      manifest.namespaces.map((n) => n.name),
      ['a'],
    );
  });

  test('an explicitly declared default namespace can be enrolled', () => {
    const manifest = parse(`apiVersion: v1
kind: Namespace
metadata:
  name: default
  annotations: {ferry.dev/mesh: enabled}
---
${POD('p')}`);
    assert.deepEqual(
      manifest.namespaces.map((n) => [n.name, n.meshEnabled]),
      [['default', true]],
    );
    assert.equal(manifest.pods[0]?.meshEnabled, true);
  });

  test('empty documents and comment-only sections are skipped', () => {
    const manifest = parse(`# leading comment\n---\n${POD('p')}---\n# nothing here\n---\n`);
    assert.equal(manifest.pods.length, 1);
  });

  test('anchors and merge keys work within a document, as with kubectl', () => {
    const manifest = parse(`apiVersion: v1
kind: Pod
metadata: {name: p, labels: &labels {app: x}}
spec:
  nodeName: node-a
  containers:
    - &base {name: a, command: [sleep, infinity]}
    - <<: *base
      name: b
`);
    assert.deepEqual(
      manifest.pods[0]?.containers.map((c) => [c.name, c.command]),
      [
        ['a', ['sleep', 'infinity']],
        ['b', ['sleep', 'infinity']],
      ],
    );
    assert.deepEqual(manifest.pods[0]?.labels, { app: 'x' });
  });

  test('files are read in order, and that is the declaration order', () => {
    const manifest = parseManifests([
      { file: 'one.yaml', text: POD('b') },
      { file: 'two.yaml', text: POD('a') },
    ]);
    assert.deepEqual(
      manifest.pods.map((p) => p.name),
      ['b', 'a'],
    );
  });
});

describe('annotations', () => {
  const namespaced = (annotations: string): string => `apiVersion: v1
kind: Namespace
metadata:
  name: shop
  annotations: {ferry.dev/mesh: enabled}
---
apiVersion: v1
kind: Pod
metadata:
  name: p
  namespace: shop
  annotations:
${annotations}spec:
  nodeName: node-a
  containers: [{name: c, command: [sleep]}]
`;

  test('a pod in an enrolled namespace is enrolled; ferry.dev/mesh: disabled opts it out', () => {
    assert.equal(parse(namespaced('    example.com/team: blue\n')).pods[0]?.meshEnabled, true);
    assert.equal(parse(namespaced('    ferry.dev/mesh: disabled\n')).pods[0]?.meshEnabled, false);
  });

  test('other annotations are kept as given', () => {
    const pod = parse(namespaced('    example.com/team: blue\n    ferry.dev/mesh: disabled\n')).pods[0];
    assert.deepEqual(pod?.annotations, { 'example.com/team': 'blue', 'ferry.dev/mesh': 'disabled' });
  });

  test('exclusion annotations become lists of ports and networks', () => {
    const pod = parse(
      namespaced('    ferry.dev/exclude-outbound-ports: "5432, 6379"\n    ferry.dev/exclude-outbound-cidrs: "10.0.0.0/8,fd00::/8"\n'),
    ).pods[0];
    assert.deepEqual(pod?.excludeOutboundPorts, [5432, 6379]);
    assert.deepEqual(pod?.excludeOutboundCidrs, ['10.0.0.0/8', 'fd00::/8']);
  });

  test('excluded networks: IPv4, IPv6, /0 in both families, written as Ferry writes them', () => {
    const manifest = parse(namespaced('    ferry.dev/exclude-outbound-cidrs: "0.0.0.0/0, 2001:DB8:0:0::/32, ::/0"\n'));
    assert.deepEqual(manifest.pods[0]?.excludeOutboundCidrs, ['0.0.0.0/0', '2001:db8::/32', '::/0']);
    assert.deepEqual(manifest.warnings, []);
  });

  test('excluded networks: host bits are cleared and IPv4-mapped ones become IPv4, each with a warning', () => {
    const manifest = parse(namespaced('    ferry.dev/exclude-outbound-cidrs: "10.0.0.1/8, ::ffff:10.9.0.0/112, fd00::1/8"\n'));
    assert.deepEqual(manifest.pods[0]?.excludeOutboundCidrs, ['10.0.0.0/8', '10.9.0.0/16', 'fd00::/8']);
    const at = 'input.yaml: document 2 (Pod shop/p): metadata.annotations["ferry.dev/exclude-outbound-cidrs"]';
    assert.deepEqual(manifest.warnings, [
      `${at}: "10.0.0.1/8" has host bits set; using 10.0.0.0/8`,
      `${at}: "::ffff:10.9.0.0/112" is IPv4-mapped IPv6, matched as IPv4; using 10.9.0.0/16`,
      `${at}: "fd00::1/8" has host bits set; using fd00::/8`,
    ]);
  });

  test('excluded networks: zone indexes, bare addresses, bad lengths and the same network twice are problems', () => {
    const error = problemsOf(
      namespaced('    ferry.dev/exclude-outbound-cidrs: "fe80::1%eth0/64,10.0.0.0,::ffff:10.0.0.0/8,10.0.0.0/8,10.0.0.1/8"\n'),
    );
    assert.deepEqual(
      error.problems.map((p) => p.message.split('; expected')[0]),
      [
        '"fe80::1%eth0/64" has an IPv6 zone index (%eth0); zone indexes are not allowed',
        '"10.0.0.0" has no prefix length',
        '"::ffff:10.0.0.0/8" has a prefix length outside 96..128 (an IPv4-mapped address counts IPv6 bits: /96 is IPv4 /0)',
        '"10.0.0.1/8" is 10.0.0.0/8, which is already listed',
        'lists 5 networks',
      ],
    );
  });

  test('bad Ferry annotations are errors that name the annotation', () => {
    const error = problemsOf(
      namespaced(
        '    ferry.dev/mesh: on\n' +
          '    ferry.dev/exclude-outbound-ports: "1,2,3,4,5,6,7,8,70000"\n' +
          '    ferry.dev/exclude-outbound-cidrs: "10.0.0.1/8,fd00::/8,192.168.0.0/33,1.2.3.0/24,::/0"\n' +
          '    ferry.dev/frobnicate: "yes"\n',
      ),
      'ann.yaml',
    );
    const at = 'ann.yaml: document 2 (Pod shop/p): metadata.annotations';
    const ports = 'expected a comma-separated list of at most 8 ports, each from 1 to 65535, e.g. "5432,6379"';
    const cidrs = 'expected a comma-separated list of at most 4 IPv4 or IPv6 networks, e.g. "10.0.0.0/8,fd00::/8"';
    // In line order, like every problem list.
    assertLines(error, [
      `${at}["ferry.dev/mesh"]: "on" is not valid; expected enabled or disabled`,
      `${at}["ferry.dev/exclude-outbound-ports"]: "70000" is not a port; ${ports}`,
      `${at}["ferry.dev/exclude-outbound-ports"]: lists 9 ports; ${ports}`,
      `${at}["ferry.dev/exclude-outbound-cidrs"]: "192.168.0.0/33" has a prefix length outside 0..32; ${cidrs}`,
      `${at}["ferry.dev/exclude-outbound-cidrs"]: lists 5 networks; ${cidrs}`,
      `${at}["ferry.dev/frobnicate"]: unknown Ferry annotation; expected one of: ferry.dev/mesh, ferry.dev/exclude-outbound-ports, ferry.dev/exclude-outbound-cidrs`,
    ]);
    assert.deepEqual(
      error.problems.map((p) => p.line),
      [13, 14, 14, 15, 15, 16],
    );
  });

  test('a Namespace accepts only ferry.dev/mesh, and a Service no Ferry annotation', () => {
    const error = problemsOf(`apiVersion: v1
kind: Namespace
metadata:
  name: a
  annotations: {ferry.dev/exclude-outbound-ports: "22"}
---
apiVersion: v1
kind: Service
metadata:
  name: s
  namespace: a
  annotations: {ferry.dev/mesh: enabled}
spec:
  ports: [{port: 80}]
`);
    assertLines(error, [
      'input.yaml: document 1 (Namespace a): metadata.annotations["ferry.dev/exclude-outbound-ports"]: unknown Ferry annotation; expected one of: ferry.dev/mesh',
      'input.yaml: document 2 (Service a/s): metadata.annotations["ferry.dev/mesh"]: unknown Ferry annotation; expected no ferry.dev/ annotations on a Service',
    ]);
  });

  test('opting a pod in while its namespace is not enrolled is a warning, not a silent no-op', () => {
    const manifest = parse(POD('p', '  annotations: {ferry.dev/mesh: enabled}\n'));
    assert.equal(manifest.pods[0]?.meshEnabled, false);
    assert.deepEqual(manifest.warnings, [
      'input.yaml: document 1 (Pod default/p): metadata.annotations["ferry.dev/mesh"]: enabled has no effect because namespace default is not enrolled; annotate the Namespace with ferry.dev/mesh: enabled',
    ]);
  });
});

describe('warnings', () => {
  test('an image is accepted but named as ignored', () => {
    const manifest = parse(`apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  nodeName: node-b
  containers:
    - name: first
      command: [sleep]
    - name: server
      image: nginx:1.27
      command: [nginx]
`);
    assert.deepEqual(manifest.warnings, [
      'input.yaml: document 1 (Pod default/web): spec.containers[1].image: ignored: the sandbox runs the command directly on this machine, not from an image',
    ]);
  });
});

describe('the bad examples', () => {
  test('malformed.yaml: the YAML parser position', async () => {
    const file = example('bad/malformed.yaml');
    await assert.rejects(loadManifests([file]), (error: unknown) => {
      assert.ok(error instanceof ManifestError);
      assertLines(error, [
        `${file}: document 1: malformed YAML at line 12, column 7: Flow sequence in block collection must be sufficiently indented and end with a ]; expected valid YAML`,
      ]);
      return true;
    });
  });

  test('unknown-field.yaml: the field path, in document 2', async () => {
    const file = example('bad/unknown-field.yaml');
    await assert.rejects(loadManifests([file]), (error: unknown) => {
      assert.ok(error instanceof ManifestError);
      assertLines(error, [
        `${file}: document 2 (Pod shop/web): spec.containers[0].resources: unknown field (Ferry does not support it); expected one of: name, image, command, args, env, ports, workingDir`,
      ]);
      assert.deepEqual(error.problems[0], {
        file,
        document: 2,
        kind: 'Pod',
        name: 'shop/web',
        path: 'spec.containers[0].resources',
        message: 'unknown field (Ferry does not support it); expected one of: name, image, command, args, env, ports, workingDir',
        line: 18,
      });
      return true;
    });
  });

  test('impossible-value.yaml: the value and the allowed range', async () => {
    const file = example('bad/impossible-value.yaml');
    await assert.rejects(loadManifests([file]), (error: unknown) => {
      assert.ok(error instanceof ManifestError);
      assertLines(error, [
        `${file}: document 1 (Pod default/web): spec.containers[0].ports[0].containerPort: 65536 is out of range; expected a port number: an integer from 1 to 65535`,
      ]);
      return true;
    });
  });

  test('all three at once: one error, every problem, files in the order given', async () => {
    const files = ['impossible-value.yaml', 'malformed.yaml', 'unknown-field.yaml'].map((f) => example(`bad/${f}`));
    await assert.rejects(loadManifests(files), (error: unknown) => {
      assert.ok(error instanceof ManifestError);
      assert.equal(error.code, 'FERRY_ERR_SANDBOX_MANIFEST');
      assert.equal(error.name, 'ManifestError');
      assert.equal(error.message.split('\n')[0], 'invalid sandbox manifests (3 problems):');
      assert.deepEqual(
        error.problems.map((p) => p.file),
        files,
      );
      return true;
    });
  });
});

describe('security policies (AuthorizationPolicy, PeerAuthentication)', () => {
  const SHOP = `apiVersion: v1
kind: Namespace
metadata:
  name: shop
  annotations:
    ferry.dev/mesh: enabled
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  nodeName: node-a
  containers:
    - name: app
      command: ["sleep", "infinity"]
`;

  test('parse into the model; the root namespace needs no Namespace document', () => {
    const manifest = parse(`${SHOP}---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: ferry-system
spec:
  mtls:
    mode: STRICT
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata:
  name: web-metrics
  namespace: shop
spec:
  selector:
    matchLabels: {app: web}
  portLevelMtls:
    "9090": {mode: PERMISSIVE}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-outsiders
  namespace: ferry-system
spec:
  action: DENY
  rules:
    - from:
        - source:
            notNamespaces: ["shop", "ferry-system"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: web
  namespace: shop
  annotations:
    istio.io/dry-run: "true"
spec:
  selector:
    matchLabels: {app: web}
  action: ALLOW
  rules:
    - from:
        - source:
            principals: ["cluster.local/ns/shop/sa/client"]
      to:
        - operation:
            ports: ["8080"]
            methods: ["GET"]
`);
    assert.deepEqual(manifest.peerAuthentications, [
      { namespace: 'ferry-system', name: 'default', mode: 'STRICT', portLevelMtls: [] },
      {
        namespace: 'shop',
        name: 'web-metrics',
        selector: { app: 'web' },
        mode: 'UNSET',
        portLevelMtls: [{ port: 9090, mode: 'PERMISSIVE' }],
      },
    ]);
    assert.deepEqual(manifest.authorizationPolicies, [
      {
        namespace: 'ferry-system',
        name: 'deny-outsiders',
        action: 'DENY',
        dryRun: false,
        rules: [{ from: [{ notNamespaces: ['shop', 'ferry-system'] }] }],
      },
      {
        namespace: 'shop',
        name: 'web',
        action: 'ALLOW',
        dryRun: true,
        selector: { app: 'web' },
        rules: [{ from: [{ principals: ['cluster.local/ns/shop/sa/client'] }], to: [{ ports: [8080], methods: ['GET'] }] }],
      },
    ]);
    // The root namespace is not added to the sandbox's namespaces: nothing runs there.
    assert.deepEqual(
      manifest.namespaces.map((n) => n.name),
      ['shop'],
    );
    assert.deepEqual(manifest.warnings, [
      'input.yaml: document 6 (AuthorizationPolicy shop/web): spec.rules[0].to[0].operation.methods: HTTP attributes are not enforced yet ' +
        '(Ferry authorizes TCP connections); this ALLOW rule matches nothing (more restrictive than written)',
    ]);
  });

  test('problems carry file, document, object, field path and line', () => {
    const error = problemsOf(`${SHOP}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: bad
  namespace: shop
spec:
  action: CUSTOM
  rules:
    - from:
        - source:
            ipBlocks: ["10.0.0.0/8", "10.0.0.300"]
      to:
        - operation:
            ports: ["http"]
            verbs: [GET]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: ns
  namespace: shop
spec:
  mtls: {mode: STRICT}
  portLevelMtls:
    "8080": {mode: DISABLE}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: elsewhere
  namespace: nowhere
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: bad
  namespace: shop
---
apiVersion: security.istio.io/v1alpha1
kind: AuthorizationPolicy
metadata:
  name: old
`);
    assertLines(error, [
      'input.yaml: document 3 (AuthorizationPolicy shop/bad): spec.action: CUSTOM is not supported (Ferry has no external authorization providers); expected ALLOW, DENY or AUDIT',
      'input.yaml: document 3 (AuthorizationPolicy shop/bad): spec.rules[0].from[0].source.ipBlocks[1]: "10.0.0.300" is not an IPv4 or IPv6 address or CIDR; expected an IP address or CIDR, e.g. 10.0.0.0/8 or fd00::/8',
      'input.yaml: document 3 (AuthorizationPolicy shop/bad): spec.rules[0].to[0].operation.ports[0]: "http" is not a port; expected a port from 1 to 65535, as Istio writes it (a string such as "8080") or a number',
      'input.yaml: document 3 (AuthorizationPolicy shop/bad): spec.rules[0].to[0].operation.verbs: unknown field (Ferry does not support it); expected one of: hosts, notHosts, ports, notPorts, methods, notMethods, paths, notPaths',
      'input.yaml: document 4 (PeerAuthentication shop/ns): spec.portLevelMtls: is only allowed together with spec.selector.matchLabels (as in Istio, a namespace-wide or mesh-wide PeerAuthentication cannot set port-level mTLS); expected a selector, or no portLevelMtls',
      'input.yaml: document 5 (PeerAuthentication nowhere/elsewhere): metadata.namespace: namespace "nowhere" is not declared; expected a Namespace document named "nowhere", or default',
      'input.yaml: document 6 (AuthorizationPolicy shop/bad): metadata.name: duplicate AuthorizationPolicy shop/bad; expected unique names (first declared in input.yaml: document 3)',
      'input.yaml: document 7 (AuthorizationPolicy default/old): apiVersion: "security.istio.io/v1alpha1" is not the apiVersion of AuthorizationPolicy; expected security.istio.io/v1 or security.istio.io/v1beta1',
    ]);
    const lineOf = (path: string): number | undefined => error.problems.find((p) => p.path === path)?.line;
    assert.equal(lineOf('spec.action'), 26);
    assert.equal(lineOf('spec.rules[0].from[0].source.ipBlocks[1]'), 30);
    assert.equal(lineOf('spec.portLevelMtls'), 43);
  });

  test('warnings: an unenrolled namespace, a selector that matches no pod, conflicting PeerAuthentications', () => {
    const manifest = parse(`${SHOP}---
apiVersion: v1
kind: Namespace
metadata: {name: legacy}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: legacy}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: typo, namespace: ferry-system}
spec:
  selector:
    matchLabels: {app: wbe}
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: b, namespace: shop}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: a, namespace: shop}
spec: {mtls: {mode: PERMISSIVE}}
`);
    assert.deepEqual(manifest.warnings, [
      'input.yaml: document 4 (AuthorizationPolicy legacy/allow-nothing): metadata.namespace: has no effect because namespace legacy is not enrolled; annotate the Namespace with ferry.dev/mesh: enabled',
      'input.yaml: document 5 (AuthorizationPolicy ferry-system/typo): spec.selector.matchLabels: matches no pod in any namespace, so the policy applies to nothing',
      'PeerAuthentication shop/b: another namespace-wide PeerAuthentication, shop/a, is in force in namespace shop (the first by name; Istio would use the oldest); delete one of them',
    ]);
  });

  test('examples/bad/bad-policy.yaml', async () => {
    const file = example('bad/bad-policy.yaml');
    await assert.rejects(loadManifests([file]), (error: unknown) => {
      assert.ok(error instanceof ManifestError);
      assertLines(error, [
        `${file}: document 2 (AuthorizationPolicy shop/office-only): spec.rules[0].from[0].source.ipBlocks[1]: "192.168.0.0/33" has a prefix length outside 0..32; expected an IP address or CIDR, e.g. 10.0.0.0/8 or fd00::/8`,
        `${file}: document 3 (AuthorizationPolicy shop/ext-authz): spec.action: CUSTOM is not supported (Ferry has no external authorization providers); expected ALLOW, DENY or AUDIT`,
        `${file}: document 4 (PeerAuthentication shop/default): spec.portLevelMtls: is only allowed together with spec.selector.matchLabels (as in Istio, a namespace-wide or mesh-wide PeerAuthentication cannot set port-level mTLS); expected a selector, or no portLevelMtls`,
      ]);
      assert.deepEqual(
        error.problems.map((p) => p.line),
        [20, 28, 40],
      );
      return true;
    });
  });
});

describe('shape errors', () => {
  test('documents that are not objects, lack apiVersion or kind, or have an unknown kind or version', () => {
    const error = problemsOf(`- just a list
---
apiVersion: v1
metadata: {name: x}
---
kind: Pod
metadata: {name: x}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: d, namespace: shop}
---
apiVersion: v1
kind: Node
metadata: {name: n}
---
apiVersion: 1
kind: [Pod]
`);
    const kinds =
      'Namespace, Pod or Service (apiVersion v1), Node (apiVersion ferry.dev/v1alpha1), or AuthorizationPolicy or PeerAuthentication (apiVersion security.istio.io/v1)';
    assertLines(error, [
      'input.yaml: document 1: is a list; expected a mapping with apiVersion, kind and metadata',
      `input.yaml: document 2: kind: is required; expected ${kinds}`,
      'input.yaml: document 3 (Pod default/x): apiVersion: is required; expected v1',
      `input.yaml: document 4 (Deployment shop/d): kind: unknown kind "Deployment"; expected ${kinds}`,
      'input.yaml: document 5 (Node n): apiVersion: "v1" is not the apiVersion of Node; expected ferry.dev/v1alpha1',
      'input.yaml: document 6: apiVersion: is an integer (1); expected the apiVersion of a supported kind',
      `input.yaml: document 6: kind: is a list; expected ${kinds}`,
    ]);
  });

  test('wrong types name the field, the value found and what was expected', () => {
    const error = problemsOf(`apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: 1}
spec:
  nodeName: node-a
  containers:
    - name: server
      command: node server.js
      env: [{name: PORT, value: 8080}]
      ports:
        - containerPort: "80"
`);
    assertLines(error, [
      "input.yaml: document 1 (Pod default/web): metadata.labels.app: is an integer (1); expected a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
      'input.yaml: document 1 (Pod default/web): spec.containers[0].command: is a string ("node server.js"); expected the program and its leading arguments, a non-empty list of strings, e.g. ["node", "server.js"]',
      'input.yaml: document 1 (Pod default/web): spec.containers[0].env[0].value: is an integer (8080); expected a string (quote numbers and booleans)',
      'input.yaml: document 1 (Pod default/web): spec.containers[0].ports[0].containerPort: is a string ("80"); expected a port number: an integer from 1 to 65535',
    ]);
    assert.deepEqual(
      error.problems.map((p) => p.line),
      [5, 10, 11, 13],
    );
  });

  test('missing required fields and empty lists', () => {
    const error = problemsOf(`apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  nodeName: node-a
  containers:
    - name: c
    - name: d
      command: []
---
apiVersion: v1
kind: Pod
metadata: {name: q}
---
apiVersion: v1
kind: Service
metadata: {name: s}
spec: {selector: {app: x}}
---
apiVersion: v1
kind: Service
metadata: {name: t}
spec: {ports: []}
`);
    assertLines(error, [
      'input.yaml: document 1 (Pod default/p): spec.containers[0].command: is required; expected the program and its leading arguments, a non-empty list of strings, e.g. ["node", "server.js"]',
      'input.yaml: document 1 (Pod default/p): spec.containers[1].command: is empty; expected the program and its leading arguments, a non-empty list of strings, e.g. ["node", "server.js"]',
      'input.yaml: document 2 (Pod default/q): spec: is required; expected a pod spec (a mapping with containers)',
      'input.yaml: document 3 (Service default/s): spec.ports: is required; expected a list of at least one port',
      'input.yaml: document 4 (Service default/t): spec.ports: is empty; expected a list of at least one port',
    ]);
  });

  test('unsupported protocols and Service types', () => {
    const error = problemsOf(`apiVersion: v1
kind: Pod
metadata: {name: dns}
spec:
  nodeName: node-a
  containers:
    - name: c
      command: [sleep]
      ports: [{containerPort: 53, protocol: UDP}, {containerPort: 54, protocol: SCTP}]
---
apiVersion: v1
kind: Service
metadata: {name: dns}
spec:
  type: NodePort
  ports: [{port: 53, protocol: UDP}]
`);
    assertLines(error, [
      'input.yaml: document 1 (Pod default/dns): spec.containers[0].ports[0].protocol: UDP is not supported yet; expected TCP',
      'input.yaml: document 1 (Pod default/dns): spec.containers[0].ports[1].protocol: "SCTP" is not supported; expected TCP',
      'input.yaml: document 2 (Service default/dns): spec.type: "NodePort" is not supported; expected ClusterIP',
      'input.yaml: document 2 (Service default/dns): spec.ports[0].protocol: UDP is not supported yet; expected TCP',
    ]);
  });

  test('unknown fields anywhere, including metadata and top level', () => {
    const error = problemsOf(`apiVersion: v1
kind: Namespace
metadata: {name: a, uid: "123"}
status: {phase: Active}
---
apiVersion: ferry.dev/v1alpha1
kind: Node
metadata: {name: n, labels: {zone: a}}
`);
    assertLines(error, [
      'input.yaml: document 1 (Namespace a): metadata.uid: unknown field (Ferry does not support it); expected one of: name, labels, annotations',
      'input.yaml: document 1 (Namespace a): status: unknown field (Ferry does not support it); expected one of: apiVersion, kind, metadata',
      'input.yaml: document 2 (Node n): metadata.labels: unknown field (Ferry does not support it); expected one of: name',
    ]);
  });

  test('a mapping key made of digits is written as a key, not as a list position', () => {
    const error = problemsOf('apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  labels: {"8080": "bad value!"}\n');
    assertLines(error, [
      `input.yaml: document 1 (Namespace a): metadata.labels["8080"]: "bad value!" is not valid; expected a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit`,
    ]);
    assert.equal(error.problems[0]?.line, 5);
  });

  test('out-of-range values and invalid names', () => {
    const error = problemsOf(`apiVersion: v1
kind: Service
metadata: {name: 9lives, namespace: Shop}
spec:
  ports:
    - {name: http, port: 0, targetPort: 70000}
    - {name: Bad_Name, port: 81, targetPort: "no--dash"}
`);
    const label = "a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)";
    const svc = "an IANA service name (at most 15 lowercase letters, digits and '-', with at least one letter), e.g. http";
    assertLines(error, [
      'input.yaml: document 1 (Service Shop/9lives): metadata.name: "9lives" is not valid; expected a Service name: a DNS-1035 label (lowercase letters, digits and \'-\', starting with a letter and ending with a letter or digit, at most 63 characters)',
      `input.yaml: document 1 (Service Shop/9lives): metadata.namespace: "Shop" is not valid; expected a namespace name: ${label}`,
      'input.yaml: document 1 (Service Shop/9lives): spec.ports[0].port: 0 is out of range; expected a port number: an integer from 1 to 65535',
      `input.yaml: document 1 (Service Shop/9lives): spec.ports[0].targetPort: 70000 is out of range; expected an integer from 1 to 65535, or the name of a containerPort (${svc})`,
      `input.yaml: document 1 (Service Shop/9lives): spec.ports[1].name: "Bad_Name" is not valid; expected ${svc}`,
      `input.yaml: document 1 (Service Shop/9lives): spec.ports[1].targetPort: "no--dash" is not valid; expected an integer from 1 to 65535, or the name of a containerPort (${svc})`,
    ]);
  });

  test("terminationGracePeriodSeconds: a whole number of seconds from 0 to 3600, passed on to the pod's kubelet", () => {
    assert.equal(parse(POD('patient', '', '  terminationGracePeriodSeconds: 30\n')).pods.length, 1);
    const error = problemsOf(POD('hasty', '', '  terminationGracePeriodSeconds: -1\n'));
    assert.equal(error.problems.length, 1);
    assert.match(error.message, /document 1 \(Pod default\/hasty\): spec\.terminationGracePeriodSeconds: -1 is out of range/);
  });

  test('a name longer than 63 characters', () => {
    const long = 'a'.repeat(64);
    const error = problemsOf(POD(long));
    assert.equal(error.problems.length, 1);
    assert.equal(error.problems[0]?.path, 'metadata.name');
    assert.match(error.problems[0]?.message ?? '', /^"a{64}" is 64 characters long; expected a pod name: a DNS-1123 label/);
  });

  test('bad label keys are reported by key', () => {
    const error = problemsOf(POD('p', '  labels: {"bad key": x}\n'));
    assertLines(error, [
      "input.yaml: document 1 (Pod default/p): metadata.labels[\"bad key\"]: is not a valid key; expected a key like app or example.com/tier (optional DNS prefix and '/', then at most 63 letters, digits, '-', '_' or '.')",
    ]);
  });
});

describe('YAML errors', () => {
  test('a repeated key is an error, not a silent override', () => {
    const error = problemsOf('apiVersion: v1\nkind: Pod\nkind: Service\n');
    assertLines(error, ['input.yaml: document 1: malformed YAML at line 3, column 1: Map keys must be unique; expected valid YAML']);
    assert.equal(error.problems[0]?.line, 3);
  });

  test('a syntax error in one document does not hide the others', () => {
    const error = problemsOf(`${POD('good')}---\nkey: [unclosed\n---\n${POD('bad', '', '  bogus: 1\n')}`);
    assert.deepEqual(
      error.problems.map((p) => [p.document, p.path]),
      [
        [2, ''],
        [3, 'spec.bogus'],
      ],
    );
  });
});

describe('cross-object checks', () => {
  test('duplicates name the first declaration', () => {
    const error = parseManifestsError([
      { file: 'a.yaml', text: `${POD('web')}---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n` },
      { file: 'b.yaml', text: `apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n${POD('web')}` },
    ]);
    assertLines(error, [
      'b.yaml: document 1 (Namespace shop): metadata.name: duplicate Namespace shop; expected unique names (first declared in a.yaml: document 2)',
      'b.yaml: document 2 (Pod default/web): metadata.name: duplicate Pod default/web; expected unique names (first declared in a.yaml: document 1)',
    ]);
  });

  test('the same name in two namespaces, or for two kinds, is not a duplicate', () => {
    const manifest = parse(`apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
${POD('web')}---
${POD('web', '  namespace: shop\n')}---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
`);
    assert.deepEqual(
      manifest.pods.map((p) => `${p.namespace}/${p.name}`),
      ['default/web', 'shop/web'],
    );
    assert.equal(manifest.services.length, 1);
  });

  test('undeclared namespaces, unknown and missing nodes', () => {
    const error = problemsOf(`apiVersion: v1
kind: Pod
metadata: {name: a, namespace: ghost}
spec:
  nodeName: node-z
  containers: [{name: c, command: [sleep]}]
---
apiVersion: v1
kind: Pod
metadata: {name: b}
spec:
  containers: [{name: c, command: [sleep]}]
`);
    assertLines(error, [
      'input.yaml: document 1 (Pod ghost/a): metadata.namespace: namespace "ghost" is not declared; expected a Namespace document named "ghost", or default',
      'input.yaml: document 1 (Pod ghost/a): spec.nodeName: "node-z" names no node; expected one of: node-a, node-b',
      'input.yaml: document 2 (Pod default/b): spec.nodeName: is required when the sandbox has more than one node; expected one of: node-a, node-b',
    ]);
  });

  test('a namespace whose own document is invalid is not reported again as undeclared', () => {
    const error = problemsOf(`apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {tier: [x]}}
---
${POD('p', '  namespace: shop\n')}`);
    assert.deepEqual(
      error.problems.map((p) => `${p.document} ${p.path}`),
      ['1 metadata.labels.tier'],
    );
  });

  test('a containerPort, port name or container name used twice in one pod', () => {
    const error = problemsOf(`apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  nodeName: node-a
  containers:
    - name: a
      command: [x]
      ports: [{containerPort: 8080, name: http}]
      env: [{name: X, value: "1"}, {name: X, value: "2"}]
    - name: a
      command: [""]
      ports: [{containerPort: 8080, name: http}]
`);
    const at = 'input.yaml: document 1 (Pod default/p): ';
    assertLines(error, [
      `${at}spec.containers[0].env[1].name: "X" is set twice in this container; expected each variable once`,
      `${at}spec.containers[1].name: "a" is already used by spec.containers[0]; expected unique container names`,
      `${at}spec.containers[1].command[0]: is empty; expected the program to run`,
      `${at}spec.containers[1].ports[0].containerPort: 8080 is already declared at spec.containers[0].ports[0]; expected each containerPort once per pod`,
      `${at}spec.containers[1].ports[0].name: "http" is already declared at spec.containers[0].ports[0]; expected unique port names per pod`,
    ]);
  });

  test('Service ports: unique, and named when there are several', () => {
    const error = problemsOf(`apiVersion: v1
kind: Service
metadata: {name: s}
spec:
  ports: [{port: 80}, {name: a, port: 80}, {name: a, port: 81}]
`);
    const at = 'input.yaml: document 1 (Service default/s): ';
    assertLines(error, [
      `${at}spec.ports[0].name: is required when a Service has more than one port; expected an IANA service name (at most 15 lowercase letters, digits and '-', with at least one letter), e.g. http`,
      `${at}spec.ports[1].port: 80 is already used by spec.ports[0]; expected unique ports`,
      `${at}spec.ports[2].name: "a" is already used by spec.ports[1]; expected unique port names`,
    ]);
  });

  test('clusterIP: inside the service range, not headless, not taken', () => {
    const svc = (name: string, ip: string): string => `apiVersion: v1
kind: Service
metadata: {name: ${name}}
spec:
  clusterIP: "${ip}"
  ports: [{port: 80}]
`;
    const expected = 'expected an IPv4 address inside 10.96.0.0/16 other than its first and last, or no clusterIP to have one allocated';
    const error = problemsOf(
      [
        svc('a', '10.96.0.20'),
        svc('b', '10.96.0.20'),
        svc('c', '10.97.0.1'),
        svc('d', 'None'),
        svc('e', '10.96.255.255'),
        svc('f', 'fd00::1'),
      ].join('---\n'),
    );
    assertLines(error, [
      'input.yaml: document 2 (Service default/b): spec.clusterIP: 10.96.0.20 is already taken by Service default/a; expected a free address inside 10.96.0.0/16',
      `input.yaml: document 3 (Service default/c): spec.clusterIP: 10.97.0.1 is outside the service range; ${expected}`,
      `input.yaml: document 4 (Service default/d): spec.clusterIP: headless Services (clusterIP: None) are not supported yet; ${expected}`,
      `input.yaml: document 5 (Service default/e): spec.clusterIP: 10.96.255.255 is outside the service range; ${expected}`,
      `input.yaml: document 6 (Service default/f): spec.clusterIP: "fd00::1" is not an IPv4 address; ${expected}`,
    ]);
  });

  test('an explicit clusterIP is kept in the model', () => {
    const manifest = parse('apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {clusterIP: 10.96.0.53, ports: [{port: 53}]}\n');
    assert.equal(manifest.services[0]?.clusterIP, '10.96.0.53');
  });
});

describe('name-length limits for generated names', () => {
  test('the limits are derived from the 64-character netns name and a 16-character prefix', () => {
    assert.equal(NODE_NAME_MAX, 64 - 16 - '-node-'.length);
    assert.equal(POD_QUALIFIED_NAME_MAX, 64 - 16 - '-pod-'.length - 1);
    assert.equal(NAMESPACE_NAME_MAX, POD_QUALIFIED_NAME_MAX - 1);
  });

  test('names at the limit are accepted', () => {
    const node = 'n'.repeat(NODE_NAME_MAX);
    const ns = 's'.repeat(NAMESPACE_NAME_MAX);
    const manifest = parse(`apiVersion: ferry.dev/v1alpha1
kind: Node
metadata: {name: ${node}}
---
apiVersion: v1
kind: Namespace
metadata: {name: ${ns}}
---
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: ${ns}}
spec: {containers: [{name: c, command: [sleep]}]}
`);
    assert.equal(manifest.pods[0]?.nodeName, node);
    assert.equal(`${manifest.pods[0]?.namespace}${manifest.pods[0]?.name}`.length, POD_QUALIFIED_NAME_MAX);
  });

  test('names one over the limit say which limit and why', () => {
    const node = 'n'.repeat(NODE_NAME_MAX + 1);
    const ns = 's'.repeat(NAMESPACE_NAME_MAX + 1);
    const error = problemsOf(`apiVersion: ferry.dev/v1alpha1
kind: Node
metadata: {name: ${node}}
---
apiVersion: v1
kind: Namespace
metadata: {name: ${ns}}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: ${'p'.repeat(POD_QUALIFIED_NAME_MAX - 3)}, namespace: shop}
spec: {containers: [{name: c, command: [sleep]}]}
`);
    assertLines(error, [
      `input.yaml: document 1 (Node ${node}): metadata.name: is 43 characters long; expected at most 42, so that the node's network namespace PREFIX-node-NAME fits in 64 characters`,
      `input.yaml: document 2 (Namespace ${ns}): metadata.name: is 42 characters long; expected at most 41, so that pod network namespace names PREFIX-pod-NAMESPACE-POD fit in 64 characters`,
      `input.yaml: document 4 (Pod shop/${'p'.repeat(39)}): metadata.name: namespace and pod name together are 43 characters; expected at most 42 together, so that the pod's network namespace PREFIX-pod-shop-${'p'.repeat(39)} stays within 64 characters for any sandbox prefix of up to 16 characters`,
    ]);
  });
});

describe('empty input and unreadable files', () => {
  test('no sources at all', () => {
    const error = parseManifestsError([]);
    assertLines(error, [
      '(no files): no documents found; expected at least one Namespace, Pod or Service (apiVersion v1), Node (apiVersion ferry.dev/v1alpha1), or AuthorizationPolicy or PeerAuthentication (apiVersion security.istio.io/v1)',
    ]);
  });

  test('files with only comments and separators', () => {
    const error = parseManifestsError([
      { file: 'a.yaml', text: '# nothing\n' },
      { file: 'b.yaml', text: '---\n---\n' },
    ]);
    assert.equal(error.problems.length, 1);
    assert.match(error.message, /\na\.yaml, b\.yaml: no documents found; expected at least one /);
  });

  test('an unreadable file is one more problem, with the fs error as cause', async () => {
    const missing = path.join(ROOT, 'examples', 'does-not-exist.yaml');
    await assert.rejects(loadManifests([missing, example('bad/impossible-value.yaml')]), (error: unknown) => {
      assert.ok(error instanceof ManifestError);
      assert.equal(error.problems.length, 2);
      assert.equal(error.problems[0]?.message, 'cannot read file (ENOENT); expected a readable YAML file');
      assert.equal(error.problems[0]?.file, missing);
      assert.equal(error.problems[1]?.path, 'spec.containers[0].ports[0].containerPort');
      assert.equal((error.cause as NodeJS.ErrnoException).code, 'ENOENT');
      return true;
    });
  });
});

describe('error registry', () => {
  test('every class uses a documented code in the module namespace', () => {
    const errors = [new ManifestError([]), new PlanError('x'), new SandboxArgumentError('x')];
    assert.deepEqual(errors.map((e) => e.code).sort(), Object.keys(SANDBOX_ERROR_CODES).sort());
    assert.deepEqual(
      errors.map((e) => e.name),
      ['ManifestError', 'PlanError', 'SandboxArgumentError'],
    );
    for (const [code, description] of Object.entries(SANDBOX_ERROR_CODES)) {
      assert.match(code, /^FERRY_ERR_SANDBOX_[A-Z_]+$/);
      assert.ok(description.length > 20 && !description.includes('\n'), `${code} needs a one-line description`);
    }
  });

  test('cause is carried', () => {
    const cause = new Error('root');
    assert.equal(new PlanError('x', { cause }).cause, cause);
  });
});

function parseManifestsError(sources: { file: string; text: string }[]): ManifestError {
  try {
    parseManifests(sources);
  } catch (error) {
    assert.ok(error instanceof ManifestError);
    return error;
  }
  assert.fail('expected the manifests to be rejected');
}
