// The agent's side of the controller's CA service: CertificateAuthorityClient over gRPC and TLS, with the
// projected service-account token read for every call, and a trust-bundle watcher that reconnects.
import * as fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type { CaChange } from './ca-state';
import { certificateServiceClient, type SignRequestMessage, type SignResponseMessage, type TrustBundleMessage } from './ca-proto';
import type { RotationPhase } from './ca-state';
import type { CertificateAuthorityClient, SignRequest, SignResponse } from './certificate-authority';
import { IdentityError } from './errors';
import { spiffeUri } from './spiffe';

export interface GrpcCaClientOptions {
  /** The controller's CA service, host:port. */
  address: string;
  /** PEM bundle of the CA that issued the controller's serving certificate. */
  caFile: string;
  /** The projected service-account token (audience ferry-controller); re-read for every call, since the kubelet rotates it. */
  tokenFile: string;
  /** Name to check in the controller's certificate, when it is not the host of `address` (e.g. ferry-controller.ferry-system.svc). */
  serverName?: string;
  /** Deadline of each Sign and of a one-off trust bundle read. Default 10 s. */
  timeoutMs?: number;
}

export interface TrustBundleWatchOptions {
  /** First wait before a broken stream is opened again; doubles up to `retryCapMs`. Default 500 ms. */
  retryStartMs?: number;
  /** Default 30 s. */
  retryCapMs?: number;
}

const PHASES: Readonly<Record<string, RotationPhase>> = {
  ROTATION_PHASE_STEADY: 'steady',
  ROTATION_PHASE_ROTATING: 'rotating',
  ROTATION_PHASE_SWITCHED: 'switched',
};

/** A TrustBundle message as the watcher's state, or the problem with it. */
function checkedBundle(
  message: TrustBundleMessage,
): { generation: number; phase: RotationPhase; issuer: string; roots: string[] } | string {
  const phase = PHASES[message.phase];
  if (phase === undefined) return `phase ${String(message.phase)} is not a rotation phase`;
  if (!Number.isSafeInteger(message.generation) || message.generation < 1)
    return `generation ${message.generation} is not a positive integer`;
  if (!Array.isArray(message.rootsPem) || message.rootsPem.length === 0) return 'the bundle has no roots';
  if (!message.rootsPem.every((pem) => typeof pem === 'string' && pem.includes('-----BEGIN CERTIFICATE-----')))
    return 'a root is not a PEM certificate';
  return { generation: message.generation, phase, issuer: message.issuer, roots: [...message.rootsPem] };
}

interface GrpcCaStub extends grpc.Client {
  Sign(
    request: SignRequestMessage,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: (err: grpc.ServiceError | null, response?: SignResponseMessage) => void,
  ): grpc.ClientUnaryCall;
  WatchTrustBundle(
    request: Record<string, never>,
    metadata: grpc.Metadata,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<TrustBundleMessage>;
}

/**
 * CertificateAuthorityClient for `WorkloadCertificates` against `ferry controller`. Signing is one unary
 * call; the trust bundle comes from WatchTrustBundle (the watcher's latest when one runs, else a
 * stream opened for its first message). Nothing here holds the token: each call reads the file.
 */
export class GrpcCaClient implements CertificateAuthorityClient {
  readonly address: string;
  readonly #tokenFile: string;
  readonly #caFile: string;
  readonly #serverName: string | undefined;
  #current: { ca: Buffer; stub: GrpcCaStub };
  /** Channels of earlier CA file contents, closed with the client (their streams may still run). */
  readonly #retired: GrpcCaStub[] = [];
  readonly #timeoutMs: number;
  /** The bundle of the newest live watcher, so trustBundle() need not open a stream. */
  #watched: string[] | undefined;

  constructor(options: GrpcCaClientOptions) {
    this.address = options.address;
    this.#tokenFile = options.tokenFile;
    this.#caFile = options.caFile;
    this.#serverName = options.serverName;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#current = this.#connect(this.#readCa());
  }

  /**
   * The stub for the next call. The CA file is read again each time (a root rotation adds the new root to it,
   * and a mounted ConfigMap changes under the agent): other contents get a channel of their own, so a
   * controller serving a certificate of the new root is verified. Calls under way keep their channel.
   */
  get #stub(): GrpcCaStub {
    let ca: Buffer;
    try {
      ca = this.#readCa();
    } catch {
      // The file is being replaced: the channel held stays in use.
      return this.#current.stub;
    }
    if (!ca.equals(this.#current.ca)) {
      this.#retired.push(this.#current.stub);
      this.#current = this.#connect(ca);
    }
    return this.#current.stub;
  }

  #readCa(): Buffer {
    try {
      return fs.readFileSync(this.#caFile);
    } catch (err) {
      throw new IdentityError(
        'FERRY_ERR_IDENTITY_CA_SERVICE',
        `CA service ${this.address}: cannot read caFile ${this.#caFile}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
  }

  #connect(ca: Buffer): { ca: Buffer; stub: GrpcCaStub } {
    const channelOptions: grpc.ChannelOptions = {};
    if (this.#serverName !== undefined) {
      channelOptions['grpc.ssl_target_name_override'] = this.#serverName;
      channelOptions['grpc.default_authority'] = this.#serverName;
    }
    const Client = certificateServiceClient();
    return { ca, stub: new Client(this.address, grpc.credentials.createSsl(ca), channelOptions) as unknown as GrpcCaStub };
  }

  async sign(request: SignRequest): Promise<SignResponse> {
    const uri = spiffeUri(request.identity);
    const metadata = await this.#metadata(`Sign ${uri}`);
    const message: SignRequestMessage = {
      csrPem: request.csrPem,
      namespace: request.identity.namespace,
      serviceAccount: request.identity.serviceAccount,
      ttlSeconds: request.ttlSeconds,
      podUid: '',
      podName: '',
    };
    const response = await new Promise<SignResponseMessage>((resolve, reject) => {
      this.#stub.Sign(message, metadata, { deadline: Date.now() + this.#timeoutMs }, (err, reply) => {
        if (err !== null) reject(this.#callError(`Sign ${uri}`, err));
        else resolve(reply as SignResponseMessage);
      });
    });
    return { chainPem: response.chainPem };
  }

  async trustBundle(): Promise<string[]> {
    if (this.#watched !== undefined) return [...this.#watched];
    const metadata = await this.#metadata('WatchTrustBundle');
    return new Promise<string[]>((resolve, reject) => {
      const stream = this.#stub.WatchTrustBundle({}, metadata, { deadline: Date.now() + this.#timeoutMs });
      let settled = false;
      const settle = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        fn();
        stream.cancel();
      };
      stream.on('data', (message: TrustBundleMessage) => {
        const bundle = checkedBundle(message);
        settle(() =>
          typeof bundle === 'string'
            ? reject(new IdentityError('FERRY_ERR_IDENTITY_CA_SERVICE', `CA service ${this.address}: trust bundle: ${bundle}`))
            : resolve(bundle.roots),
        );
      });
      stream.on('error', (err: grpc.ServiceError) => settle(() => reject(this.#callError('WatchTrustBundle', err))));
      stream.on('end', () =>
        settle(() =>
          reject(new IdentityError('FERRY_ERR_IDENTITY_CA_SERVICE', `CA service ${this.address}: WatchTrustBundle ended before a bundle`)),
        ),
      );
    });
  }

  /**
   * Follow the trust bundle: `onChange` for the first bundle and every change after it, with
   * the same report as the CA directory's watchTrustBundle (so the agent's reaction is the same:
   * trust the roots, re-issue when the issuer changed). A stream that fails or ends is opened again
   * after a backoff (500 ms doubling to 30 s, reset by a bundle); `onError` hears each distinct
   * failure once, and the last bundle stays in force meanwhile. Call the returned function to stop.
   */
  watchTrustBundle(
    onChange: (change: CaChange) => void,
    onError: (err: Error) => void = () => {},
    options: TrustBundleWatchOptions = {},
  ): () => void {
    const startMs = options.retryStartMs ?? 500;
    const capMs = options.retryCapMs ?? 30_000;
    let retryMs = startMs;
    let last: { generation: number; issuer: string; roots: string[] } | undefined;
    let lastError = '';
    let stream: grpc.ClientReadableStream<TrustBundleMessage> | undefined;
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    const report = (err: Error): void => {
      if (err.message === lastError) return;
      lastError = err.message;
      onError(err);
    };
    const retry = (): void => {
      if (stopped || timer !== undefined) return;
      stream = undefined;
      timer = setTimeout(() => {
        timer = undefined;
        open();
      }, retryMs);
      timer.unref();
      retryMs = Math.min(retryMs * 2, capMs);
    };
    const open = (): void => {
      if (stopped) return;
      this.#metadata('WatchTrustBundle').then(
        (metadata) => {
          if (stopped) return;
          const current = this.#stub.WatchTrustBundle({}, metadata);
          stream = current;
          current.on('data', (message: TrustBundleMessage) => {
            const bundle = checkedBundle(message);
            if (typeof bundle === 'string') {
              report(new IdentityError('FERRY_ERR_IDENTITY_CA_SERVICE', `CA service ${this.address}: trust bundle: ${bundle}`));
              return;
            }
            retryMs = startMs;
            lastError = '';
            this.#watched = bundle.roots;
            // A reconnect replays the bundle held: nothing new. A controller that started over with
            // another CA may reuse a generation number, so the roots and issuer are compared too.
            if (
              last !== undefined &&
              last.generation === bundle.generation &&
              last.issuer === bundle.issuer &&
              last.roots.join('') === bundle.roots.join('')
            ) {
              return;
            }
            const previous = last;
            last = bundle;
            onChange({
              generation: bundle.generation,
              phase: bundle.phase,
              issuer: bundle.issuer,
              roots: bundle.roots,
              first: previous === undefined,
              issuerChanged: previous !== undefined && previous.issuer !== bundle.issuer,
              rootsChanged: previous !== undefined && previous.roots.join('') !== bundle.roots.join(''),
            });
          });
          current.on('error', (err: grpc.ServiceError) => {
            if (stopped || stream !== current) return;
            if (err.code !== grpc.status.CANCELLED) report(this.#callError('WatchTrustBundle', err));
            retry();
          });
          current.on('end', () => {
            if (stopped || stream !== current) return;
            report(
              new IdentityError('FERRY_ERR_IDENTITY_CA_SERVICE', `CA service ${this.address}: WatchTrustBundle ended; opening it again`),
            );
            retry();
          });
        },
        (err: Error) => {
          report(err);
          retry();
        },
      );
    };
    open();
    return () => {
      stopped = true;
      clearTimeout(timer);
      stream?.cancel();
      this.#watched = undefined;
    };
  }

  close(): void {
    for (const stub of this.#retired.splice(0)) stub.close();
    this.#current.stub.close();
  }

  async #metadata(what: string): Promise<grpc.Metadata> {
    let token: string;
    try {
      token = (await fs.promises.readFile(this.#tokenFile, 'utf8')).trim();
    } catch (err) {
      throw new IdentityError(
        'FERRY_ERR_IDENTITY_CA_SERVICE',
        `CA service ${this.address}: ${what}: cannot read token file ${this.#tokenFile}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    if (token === '')
      throw new IdentityError(
        'FERRY_ERR_IDENTITY_CA_SERVICE',
        `CA service ${this.address}: ${what}: token file ${this.#tokenFile} is empty`,
      );
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${token}`);
    return metadata;
  }

  #callError(what: string, err: grpc.ServiceError): IdentityError {
    const status = grpc.status[err.code] ?? String(err.code);
    return new IdentityError('FERRY_ERR_IDENTITY_CA_SERVICE', `CA service ${this.address}: ${what}: ${status}: ${err.details}`, {
      cause: err,
    });
  }
}
