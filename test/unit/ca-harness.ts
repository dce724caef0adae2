// Shared pieces of the CA service tests: the controller's serving PKI, a CA service on a loopback TLS gRPC
// server, a CA held in memory and rotated by the real state machine, Pod objects, and token files.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import type { V1Pod } from '@kubernetes/client-node';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { AgentAuthError, type AgentAuthenticator, type AgentIdentity } from '../../src/controller/agent-authenticator';
import { CaService, caServerOptions, type CaServiceOptions } from '../../src/controller/ca-service';
import { CaHolder } from '../../src/controller/ca-store';
import {
  applyCaTransition,
  GrpcCaClient,
  initialCaState,
  planRotationStep,
  spiffeUri,
  type CaMetadata,
  type CertificateAuthorityClient,
  type RotationStep,
  type SpiffeId,
} from '../../src/identity';
import { createRootLogger } from '../../src/telemetry';
import { forgeCertificate, foreignRootSigner } from '../fixtures/certs';
import type { After } from './helpers';

export const SERVER_NAME = 'ferry-controller.ferry-system.svc';
export const silentLog = createRootLogger('silent');

export function tempDir(t: After, prefix = 'ferry-ca-service-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The controller's serving certificate (DNS SAN SERVER_NAME) and the CA file agents verify it with. */
export async function servingPki(dir: string): Promise<{ caFile: string; certPem: string; keyPem: string }> {
  const root = await foreignRootSigner('CN=ferry controller serving CA');
  const leaf = await forgeCertificate(root, { uris: [], dns: [SERVER_NAME] });
  const caFile = path.join(dir, 'controller-ca.pem');
  fs.writeFileSync(caFile, root.certPem);
  return { caFile, certPem: leaf.certPem, keyPem: leaf.keyPem };
}

export interface RunningCaService {
  service: CaService;
  address: string;
  caFile: string;
  /** A client over a token file holding `token`; closed when the test ends. */
  client(token: string, options?: { serverName?: string; timeoutMs?: number }): { client: GrpcCaClient; tokenFile: string };
  /** A raw stub of the service, for hostile calls the agent's client would never make. */
  raw(): grpc.Client;
  stop(): Promise<void>;
}

/** A CaService on 127.0.0.1 (ephemeral port) behind TLS with the serving PKI; stopped when the test ends. */
export async function startCaService(
  t: After,
  options: Omit<CaServiceOptions, 'log'> & {
    log?: CaServiceOptions['log'];
    port?: number;
    pki?: { caFile: string; certPem: string; keyPem: string };
  },
): Promise<RunningCaService & { pki: { caFile: string; certPem: string; keyPem: string } }> {
  const dir = tempDir(t);
  const pki = options.pki ?? (await servingPki(dir));
  const service = new CaService({ log: silentLog, ...options });
  const server = new grpc.Server(caServerOptions(options.limits));
  service.addTo(server);
  const credentials = grpc.ServerCredentials.createSsl(
    null,
    [{ private_key: Buffer.from(pki.keyPem), cert_chain: Buffer.from(pki.certPem) }],
    false,
  );
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`127.0.0.1:${options.port ?? 0}`, credentials, (err, bound) => (err ? reject(err) : resolve(bound)));
  });
  const address = `127.0.0.1:${port}`;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    service.close();
    // Calls still open (a client that never closes its channel) get a second, then are cut.
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 1000);
      server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    server.forceShutdown();
  };
  t.after(stop);
  let tokens = 0;
  return {
    service,
    address,
    pki,
    caFile: pki.caFile,
    stop,
    client(token, clientOptions = {}) {
      tokens += 1;
      const tokenFile = path.join(dir, `token-${tokens}`);
      fs.writeFileSync(tokenFile, `${token}\n`);
      const client = new GrpcCaClient({ address, caFile: pki.caFile, tokenFile, serverName: SERVER_NAME, ...clientOptions });
      t.after(() => client.close());
      return { client, tokenFile };
    },
    raw() {
      const credentials = grpc.credentials.createSsl(fs.readFileSync(pki.caFile));
      const client = new grpc.Client(address, credentials, {
        'grpc.ssl_target_name_override': SERVER_NAME,
        'grpc.default_authority': SERVER_NAME,
      });
      t.after(() => client.close());
      return client;
    },
  };
}

/**
 * FAKE, standing in for TokenReviewAuthenticator where the API server is not the subject: tokens are
 * looked up in a table. The TokenReview path itself is tested in test/k8s/ca-service.test.ts.
 */
export class TableAuthenticator implements AgentAuthenticator {
  readonly agents = new Map<string, AgentIdentity>();
  calls = 0;

  add(token: string, node: string): AgentIdentity {
    const identity: AgentIdentity = {
      node,
      subject: 'system:serviceaccount:ferry-system:ferry-agent',
      podName: `ferry-agent-${node}`,
      podUid: `uid-agent-${node}`,
      namespace: 'ferry-system',
      serviceAccount: 'ferry-agent',
    };
    this.agents.set(token, identity);
    return identity;
  }

  async authenticate(metadata: grpc.Metadata, peer: string): Promise<AgentIdentity> {
    this.calls += 1;
    const value = String(metadata.get('authorization')[0] ?? '');
    const identity = this.agents.get(value.replace(/^Bearer /, ''));
    if (identity === undefined)
      throw new AgentAuthError('FERRY_ERR_AGENT_AUTH_REFUSED', grpc.status.UNAUTHENTICATED, `agent at ${peer}: unknown token`);
    return identity;
  }
}

/** A CA held in memory, created and rotated by the same state machine and holder the Secret store uses. */
export async function memoryCa(options: { trustDomain?: string; intermediate?: boolean; rootLifetimeSeconds?: number } = {}): Promise<{
  holder: CaHolder;
  metadata: () => CaMetadata;
  rotate: (step: RotationStep) => Promise<CaMetadata>;
}> {
  const trustDomain = options.trustDomain ?? 'cluster.local';
  const holder = new CaHolder('memory CA', trustDomain);
  let files = applyCaTransition(
    {},
    await initialCaState({ trustDomain, intermediate: options.intermediate ?? true, rootLifetimeSeconds: options.rootLifetimeSeconds }),
  );
  await holder.load(files);
  return {
    holder,
    metadata: () => holder.current()!.metadata,
    async rotate(step) {
      const transition = await planRotationStep(holder.current()!.metadata, step, { subject: 'memory CA' });
      files = applyCaTransition(files, transition, { prune: true });
      await holder.load(files);
      return transition.metadata;
    },
  };
}

let podCount = 0;

/** A Pod as the API server would report it (only the fields the pod directory reads). */
export function pod(options: {
  namespace: string;
  serviceAccount: string;
  node?: string;
  phase?: string;
  name?: string;
  uid?: string;
}): V1Pod {
  podCount += 1;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace: options.namespace, name: options.name ?? `pod-${podCount}`, uid: options.uid ?? `uid-${podCount}` },
    spec: { nodeName: options.node, serviceAccountName: options.serviceAccount, containers: [{ name: 'app', image: 'app' }] },
    status: { phase: options.phase ?? 'Running' },
  };
}

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** A workload's key pair, CSR for `id`, and the chain `ca` signs for it: what a TLS peer presents. */
export async function issue(
  ca: CertificateAuthorityClient,
  id: SpiffeId,
  ttlSeconds = 3600,
): Promise<{ chainPem: string[]; keyPem: string }> {
  const keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm: EC,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeUri(id) }])],
  });
  const { chainPem } = await ca.sign({ csrPem: csr.toString('pem'), identity: id, ttlSeconds });
  const keyPem = x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY');
  return { chainPem, keyPem };
}

export interface TlsPeer {
  chainPem: readonly string[];
  keyPem: string;
  /** The roots this peer trusts. */
  bundle: readonly string[];
}

/**
 * One mutual TLS 1.3 handshake on loopback between two workloads, each verifying the other against its
 * own bundle. Both sides finish the handshake whatever the verdict (rejectUnauthorized false) and report
 * whether the peer's chain verified, so a test sees each direction separately.
 */
export async function mutualTls(
  server: TlsPeer,
  client: TlsPeer,
): Promise<{ clientVerified: boolean; serverVerified: boolean; clientError?: string }> {
  const listener = tls.createServer({
    cert: server.chainPem.join(''),
    key: server.keyPem,
    ca: [...server.bundle],
    requestCert: true,
    rejectUnauthorized: false,
    minVersion: 'TLSv1.3',
  });
  const serverSide = new Promise<boolean>((resolve) => {
    listener.once('secureConnection', (socket: tls.TLSSocket) => {
      resolve(socket.authorized);
      socket.end();
    });
    listener.once('tlsClientError', () => resolve(false));
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = listener.address() as { port: number };
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      cert: client.chainPem.join(''),
      key: client.keyPem,
      ca: [...client.bundle],
      // Workload certificates carry a SPIFFE URI and no DNS name: the chain is what is checked here.
      checkServerIdentity: () => undefined,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.3',
    });
    const clientSide = await new Promise<{ verified: boolean; error?: string }>((resolve) => {
      socket.once('secureConnect', () => resolve({ verified: socket.authorized, error: socket.authorizationError?.toString() }));
      socket.once('error', (err) => resolve({ verified: false, error: err.message }));
    });
    const serverVerified = await serverSide;
    socket.destroy();
    return { clientVerified: clientSide.verified, serverVerified, clientError: clientSide.error };
  } finally {
    await new Promise<void>((resolve) => listener.close(() => resolve()));
  }
}
