// The narrow interfaces the proxy is given: it never reaches into capture, state or native itself.
import type * as net from 'node:net';
import type { Destination } from '../state';

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
}

/** Opens a marked TCP connection from inside a pod's network namespace. */
export interface Dialer {
  dial(netnsPath: string, to: SocketAddress): Promise<net.Socket>;
}

/** Listening sockets the agent opened inside the pod's namespace, as fds for net.Server.listen. */
export interface PodListenerFds {
  outbound: number[];
  inbound: number[];
}
