// The controller's CertificateService (proto/ferry/ca/v1/ca.proto): signs a workload CSR only for a service
// account with a pod on the calling agent's node, and streams the trust bundle as the CA rotates.
import * as grpc from '@grpc/grpc-js';
import {
  IdentityError,
  certificateServiceDefinition,
  spiffeUri,
  type CaRotationPhaseName,
  type RotationPhase,
  type SignRequestMessage,
  type SignResponseMessage,
  type SpiffeId,
  type TrustBundleMessage,
  type WatchTrustBundleRequestMessage,
} from '../identity';
import type { Logger } from '../telemetry';
import { toGrpcStatus, type AgentAuthenticator, type AgentIdentity } from './agent-authenticator';
import { CaServiceError } from './ca-errors';
import { TokenBuckets } from './ca-rate-limit';
import type { CaSnapshot, CaSource } from './ca-store';
import type { PodDirectory, PodOnNode } from './pod-directory';

export interface CaServiceLimits {
  /** A P-256 CSR with one URI SAN is under 1 KiB; anything much bigger is not one. */
  maxCsrBytes: number;
  /** Lifetime when the request asks for none (ttl_seconds 0). */
  defaultTtlSeconds: number;
  /** Requested lifetimes are clamped into [minTtlSeconds, maxTtlSeconds]. */
  minTtlSeconds: number;
  maxTtlSeconds: number;
  /** Per agent (node): signs it may make at once, e.g. re-issuing every certificate after an issuer switch. */
  signBurst: number;
  /** Per agent (node): sustained signs per second. */
  signsPerSecond: number;
  /** Open WatchTrustBundle streams per node (an agent needs one; restarts overlap briefly). */
  maxWatchesPerNode: number;
}

export const DEFAULT_CA_SERVICE_LIMITS: Readonly<CaServiceLimits> = {
  maxCsrBytes: 8192,
  defaultTtlSeconds: 24 * 60 * 60,
  minTtlSeconds: 60,
  maxTtlSeconds: 24 * 60 * 60,
  signBurst: 256,
  signsPerSecond: 10,
  maxWatchesPerNode: 8,
};

/**
 * Server options the CA service is meant to run with: requests are small (a CSR), so a message larger
 * than the CSR cap plus its fields is refused by gRPC before it is parsed; connections are closed after
 * an hour (with a grace for calls in flight), so agents re-authenticate with a fresh token and a
 * long-lived WatchTrustBundle stream does not outlive the token that opened it by more than that.
 */
export function caServerOptions(limits: Partial<CaServiceLimits> = {}): grpc.ServerOptions {
  const maxCsrBytes = limits.maxCsrBytes ?? DEFAULT_CA_SERVICE_LIMITS.maxCsrBytes;
  return {
    'grpc.max_receive_message_length': maxCsrBytes + 4096,
    'grpc.max_connection_age_ms': 60 * 60 * 1000,
    'grpc.max_connection_age_grace_ms': 60 * 1000,
    'grpc.keepalive_time_ms': 60 * 1000,
    'grpc.keepalive_timeout_ms': 20 * 1000,
  };
}

const PHASE_NAMES: Readonly<Record<RotationPhase, CaRotationPhaseName>> = {
  steady: 'ROTATION_PHASE_STEADY',
  rotating: 'ROTATION_PHASE_ROTATING',
  switched: 'ROTATION_PHASE_SWITCHED',
};

export function trustBundleMessage(snapshot: CaSnapshot): TrustBundleMessage {
  return {
    rootsPem: [...snapshot.roots],
    phase: PHASE_NAMES[snapshot.metadata.phase],
    generation: snapshot.metadata.generation,
    issuer: snapshot.metadata.issuer,
    trustDomain: snapshot.metadata.trustDomain,
  };
}

export interface CaServiceOptions {
  authenticator: AgentAuthenticator;
  pods: PodDirectory & { readonly synced?: boolean };
  ca: CaSource;
  log: Logger;
  limits?: Partial<CaServiceLimits>;
  now?: () => number;
}

export interface CaServiceStats {
  signed: number;
  denied: number;
  invalid: number;
  rateLimited: number;
  unauthenticated: number;
  watches: number;
}

/** The pod that lets `node`'s agent ask for `namespace/serviceAccount` (and, when named, exactly that pod). */
function podFor(pods: Iterable<PodOnNode>, request: SignRequestMessage): PodOnNode | undefined {
  for (const pod of pods) {
    if (pod.namespace !== request.namespace || pod.serviceAccount !== request.serviceAccount) continue;
    if (request.podUid !== '' && pod.uid !== request.podUid) continue;
    if (request.podName !== '' && pod.name !== request.podName) continue;
    return pod;
  }
  return undefined;
}

/**
 * Serves CertificateService. Each call is authenticated first (the agent and its node come from its
 * token); Sign then spends a token of the node's bucket, checks the request, asks the pod directory
 * whether the identity runs on that node, and signs with the CA of the moment. Watch streams are
 * ended by `close` (and by the client going away); the CA source's listener is removed with each.
 */
export class CaService {
  readonly limits: Readonly<CaServiceLimits>;
  readonly #authenticator: AgentAuthenticator;
  readonly #pods: PodDirectory & { readonly synced?: boolean };
  readonly #ca: CaSource;
  readonly #log: Logger;
  readonly #buckets: TokenBuckets;
  readonly #watches = new Map<string, Set<grpc.ServerWritableStream<WatchTrustBundleRequestMessage, TrustBundleMessage>>>();
  readonly #stats = { signed: 0, denied: 0, invalid: 0, rateLimited: 0, unauthenticated: 0 };

  constructor(options: CaServiceOptions) {
    this.limits = { ...DEFAULT_CA_SERVICE_LIMITS, ...options.limits };
    const { minTtlSeconds, maxTtlSeconds, defaultTtlSeconds } = this.limits;
    if (!(minTtlSeconds >= 1 && minTtlSeconds <= defaultTtlSeconds && defaultTtlSeconds <= maxTtlSeconds)) {
      throw new RangeError(
        `CA service limits: need 1 <= minTtlSeconds <= defaultTtlSeconds <= maxTtlSeconds, got ${minTtlSeconds}, ${defaultTtlSeconds}, ${maxTtlSeconds}`,
      );
    }
    this.#authenticator = options.authenticator;
    this.#pods = options.pods;
    this.#ca = options.ca;
    this.#log = options.log;
    this.#buckets = new TokenBuckets({ burst: this.limits.signBurst, perSecond: this.limits.signsPerSecond, now: options.now });
  }

  /** Register on `server` (create it with caServerOptions()). */
  addTo(server: grpc.Server): void {
    server.addService(certificateServiceDefinition(), {
      Sign: (call: grpc.ServerUnaryCall<SignRequestMessage, SignResponseMessage>, callback: grpc.sendUnaryData<SignResponseMessage>) => {
        this.#sign(call).then(
          (response) => callback(null, response),
          (err: unknown) => callback(this.#refusal(err, call.getPeer(), 'Sign')),
        );
      },
      WatchTrustBundle: (call: grpc.ServerWritableStream<WatchTrustBundleRequestMessage, TrustBundleMessage>) => {
        // grpc-js answers a server stream's 'error' with that status and ends it.
        this.#watch(call).catch((err: unknown) => call.emit('error', this.#refusal(err, call.getPeer(), 'WatchTrustBundle')));
      },
    });
  }

  /**
   * End every watch stream (the server is going down). Then stop the server with tryShutdown and a
   * deadline, forceShutdown after it: a stream the client cancelled while its end was under way can keep
   * tryShutdown waiting.
   */
  close(): void {
    for (const streams of this.#watches.values()) for (const stream of streams) stream.end();
    this.#watches.clear();
  }

  stats(): CaServiceStats {
    let watches = 0;
    for (const streams of this.#watches.values()) watches += streams.size;
    return { ...this.#stats, watches };
  }

  async #sign(call: grpc.ServerUnaryCall<SignRequestMessage, SignResponseMessage>): Promise<SignResponseMessage> {
    const agent = await this.#authenticator.authenticate(call.metadata, call.getPeer());
    const wait = this.#buckets.take(agent.node);
    if (wait > 0) {
      throw new CaServiceError(
        'FERRY_ERR_CA_RATE_LIMITED',
        `agent of node ${agent.node}: more than ${this.limits.signBurst} signs at once or ${this.limits.signsPerSecond}/s; retry in ${wait} ms`,
      );
    }
    const request = call.request;
    const id = this.#identity(request, agent);
    const uri = spiffeUri(id);
    if (request.csrPem.length > this.limits.maxCsrBytes) {
      throw new CaServiceError(
        'FERRY_ERR_CA_SIGN_REQUEST',
        `sign ${uri}: csr_pem is ${request.csrPem.length} bytes; at most ${this.limits.maxCsrBytes}`,
      );
    }
    if (this.#pods.synced === false) {
      throw new CaServiceError('FERRY_ERR_CA_UNAVAILABLE', `sign ${uri}: the controller has not listed the cluster's pods yet`);
    }
    const pod = podFor(this.#pods.podsOnNode(agent.node), request);
    if (pod === undefined) {
      const which = request.podUid !== '' || request.podName !== '' ? ` (pod ${request.podName || '?'} uid ${request.podUid || '?'})` : '';
      throw new CaServiceError(
        'FERRY_ERR_CA_SIGN_DENIED',
        `sign ${uri}: no running pod of service account ${request.namespace}/${request.serviceAccount}${which} is scheduled on node ${agent.node}, the calling agent's node`,
      );
    }
    const snapshot = this.#ca.current();
    if (snapshot === undefined) throw new CaServiceError('FERRY_ERR_CA_UNAVAILABLE', `sign ${uri}: the CA is not loaded yet`);
    const requested = request.ttlSeconds;
    const ttlSeconds =
      requested === 0 ? this.limits.defaultTtlSeconds : Math.min(this.limits.maxTtlSeconds, Math.max(this.limits.minTtlSeconds, requested));
    try {
      const { chainPem } = await snapshot.ca.sign({ csrPem: request.csrPem, identity: id, ttlSeconds });
      this.#stats.signed += 1;
      this.#log.debug(
        { node: agent.node, identity: uri, pod: `${pod.namespace}/${pod.name}`, ttlSeconds, generation: snapshot.metadata.generation },
        'signed',
      );
      return { chainPem, trustBundlePem: [...snapshot.roots] };
    } catch (err) {
      if (err instanceof IdentityError && err.code === 'FERRY_ERR_IDENTITY_CSR') {
        throw new CaServiceError('FERRY_ERR_CA_SIGN_REQUEST', err.message, { cause: err });
      }
      // The CA cannot sign at all (its issuer expired): the agent should retry once it is rotated.
      if (err instanceof IdentityError && err.code === 'FERRY_ERR_IDENTITY_CA') {
        this.#log.error({ err, generation: snapshot.metadata.generation }, 'the CA cannot sign');
        throw new CaServiceError('FERRY_ERR_CA_UNAVAILABLE', `sign ${uri}: ${err.message}`, { cause: err });
      }
      throw err;
    }
  }

  /** The SPIFFE ID asked for, in the CA's trust domain; malformed names are the caller's error. */
  #identity(request: SignRequestMessage, agent: AgentIdentity): SpiffeId {
    const snapshot = this.#ca.current();
    if (snapshot === undefined)
      throw new CaServiceError('FERRY_ERR_CA_UNAVAILABLE', `agent of node ${agent.node}: the CA is not loaded yet`);
    const id = { trustDomain: snapshot.metadata.trustDomain, namespace: request.namespace, serviceAccount: request.serviceAccount };
    try {
      spiffeUri(id);
    } catch (err) {
      throw new CaServiceError('FERRY_ERR_CA_SIGN_REQUEST', `sign request from node ${agent.node}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    return id;
  }

  async #watch(call: grpc.ServerWritableStream<WatchTrustBundleRequestMessage, TrustBundleMessage>): Promise<void> {
    const agent = await this.#authenticator.authenticate(call.metadata, call.getPeer());
    if (call.cancelled) return;
    let streams = this.#watches.get(agent.node);
    if (streams === undefined) {
      streams = new Set();
      this.#watches.set(agent.node, streams);
    }
    if (streams.size >= this.limits.maxWatchesPerNode) {
      throw new CaServiceError(
        'FERRY_ERR_CA_UNAVAILABLE',
        `agent of node ${agent.node}: ${streams.size} trust bundle watches are open already`,
      );
    }
    const set = streams;
    set.add(call);
    const send = (snapshot: CaSnapshot): void => {
      call.write(trustBundleMessage(snapshot));
    };
    const stop = this.#ca.onChange(send);
    const done = (): void => {
      stop();
      set.delete(call);
      if (set.size === 0 && this.#watches.get(agent.node) === set) this.#watches.delete(agent.node);
    };
    call.on('cancelled', done);
    call.on('close', done);
    call.on('error', done);
    this.#log.debug({ node: agent.node, peer: call.getPeer() }, 'trust bundle watch opened');
    const current = this.#ca.current();
    if (current !== undefined) send(current);
  }

  /** The status a failed call is answered with; unexpected errors are logged and answered INTERNAL. */
  #refusal(err: unknown, peer: string, method: string): Partial<grpc.StatusObject> {
    const status = toGrpcStatus(err);
    switch (status.code) {
      case grpc.status.UNAUTHENTICATED:
        this.#stats.unauthenticated += 1;
        break;
      case grpc.status.PERMISSION_DENIED:
        this.#stats.denied += 1;
        break;
      case grpc.status.INVALID_ARGUMENT:
        this.#stats.invalid += 1;
        break;
      case grpc.status.RESOURCE_EXHAUSTED:
        this.#stats.rateLimited += 1;
        break;
      case grpc.status.INTERNAL:
        this.#log.error({ err, peer, method }, 'CA service call failed');
        return status;
    }
    this.#log.info({ peer, method, code: grpc.status[status.code as number], reason: status.details }, 'CA service call refused');
    return status;
  }
}
