// The narrow interfaces the proxy is given: it never reaches into capture, state or native itself.
import type * as net from 'node:net';
import type { Destination, Service, Workload } from '../state';

export interface SocketAddress {
  family: 4 | 6;
  ip: string;
  port: number;
}

/** What the proxy knows of an enrolled pod. */
export interface ProxyPod {
  uid: string;
  namespace: string;
  name: string;
  serviceAccount: string;
  netnsPath: string;
  netnsCookie: bigint;
  ips: string[];
}

/** Answers "where was this captured socket going?" for a socket accepted on a pod's outbound listener. */
export interface OriginalDestinationSource {
  originalDestination(pod: ProxyPod, accepted: net.Socket): SocketAddress | undefined;
}

/** Service VIP and workload resolution. */
export interface DestinationResolver {
  resolve(ip: string, port: number): Destination;
  /** Workloads by uid and by address: the parties the metrics and access log name. */
  workload(uid: string): Workload | undefined;
  workloadByIp(ip: string): Workload | undefined;
  /** The Service that sends traffic to `workload` on target `port` (which Service an inbound connection came through). */
  serviceOf(workload: Workload, port: number): Service | undefined;
}

export interface DialOptions {
  /**
   * Deliver to an app inside its own pod with this source address — the real client's (the source
   * pod's, or the plaintext peer's) — instead of the pod's own: a transparent socket bound to it,
   * carrying the delivery mark the pod's reply route matches. Same family as the target.
   */
  sourceIp?: string;
  /** With sourceIp: the source port (the proxy picks it so as not to collide; see delivery-port.ts). */
  sourcePort?: number;
}

/**
 * Opens a marked TCP connection from inside a pod's network namespace. The connect itself waits on
 * the event loop (no thread is held by a destination that never answers); it fails with a code
 * (ECONNREFUSED, ETIMEDOUT, …) after the dialer's timeout at the latest.
 */
export interface Dialer {
  dial(netnsPath: string, to: SocketAddress, options?: DialOptions): Promise<net.Socket>;
}

/**
 * Socket options for the TCP sockets the proxy handles, set over setsockopt by the app (the proxy
 * never touches fds itself). Each call tolerates a socket already closed.
 */
export interface SocketOptions {
  /**
   * A relayed socket (an app's, or the proxy's dial to an app): keepalive probes and a user timeout
   * (dead peers are noticed), and a zero linger, so that if the agent dies with the connection
   * open the kernel resets it (tcp(7), socket(7)): a peer never takes a cut-off stream for a
   * complete one.
   */
  relayed(socket: net.Socket): void;
  /** Our FIN on this socket is in the kernel's hands after every byte before it: close normally again. */
  finished(socket: net.Socket): void;
  /** An HBONE tunnel's TCP socket: keepalive probes (HTTP/2 PINGs do the rest). */
  tunnel(socket: net.Socket): void;
}

/** Listening sockets the agent opened inside the pod's namespace, as fds for net.Server.listen. */
export interface PodListenerFds {
  /** 15001: connections captured by connect4/6. */
  outbound: number[];
  /** 15006: plaintext connections steered by sk_lookup. */
  inbound: number[];
  /** 15008 on 0.0.0.0 (and ::): HBONE, mutual TLS from other agents. */
  hbone: number[];
}

/** A peer's verified workload identity (from the single SPIFFE URI SAN of its certificate). */
export interface PeerIdentity {
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
  /** Istio's principal form: `<trust-domain>/ns/<ns>/sa/<sa>` (no `spiffe://`). */
  principal: string;
}

/** The TLS contexts of one workload identity, rebuilt whenever its certificate or the trust bundle changes. */
export interface IdentityContexts {
  /** For dialling HBONE as this identity: our chain and key, the trust bundle as `ca`, TLS 1.3 only. */
  client: import('node:tls').SecureContext;
  /** For serving HBONE as this identity: same material. */
  server: import('node:tls').SecureContext;
  /** The certificate's notAfter; pooled tunnels are not given new streams past it. */
  notAfter: Date;
}

/**
 * What the proxy needs of identity: current TLS contexts per workload identity and peer verification.
 * Implemented by the identity module; the proxy never sees CA keys nor the key material itself.
 */
export interface TlsProvider {
  readonly trustDomain: string;
  /** `<trust-domain>/ns/<ns>/sa/<sa>` for a workload. */
  principalFor(namespace: string, serviceAccount: string): string;
  /** Current contexts for `principal`; undefined when no certificate has been issued for it (yet). */
  contexts(principal: string): IdentityContexts | undefined;
  /**
   * Check a peer certificate the TLS layer has already chain-verified against the bundle: exactly one
   * URI SAN, a well-formed `spiffe://` ID of this trust domain. Throws (with the reason) otherwise.
   */
  peerIdentity(certificate: import('node:crypto').X509Certificate): PeerIdentity;
}

/** Source attributes of a connection arriving at a pod, as authorization sees them. */
export interface InboundSource {
  /** Verified peer (HBONE or the same-node short path); absent for plaintext. */
  peer?: PeerIdentity;
  ip: string;
}

export interface AuthorizationVerdict {
  allow: boolean;
  /** `namespace/name` of the policy that decided, when one did. */
  policy?: string;
  /** Human-readable: which rule or default decided. */
  reason: string;
}

/**
 * Peer authentication and authorization for connections arriving at an enrolled pod. Changes
 * (policy updates) are announced through `onChange`; the proxy then re-checks open connections.
 */
export interface InboundAuthorizer {
  /** PeerAuthentication for the pod and destination port: may plaintext (no mTLS) be admitted? */
  admitsPlaintext(pod: ProxyPod, port: number): boolean;
  authorize(pod: ProxyPod, source: InboundSource, destination: SocketAddress): AuthorizationVerdict;
  onChange(listener: () => void): () => void;
}
