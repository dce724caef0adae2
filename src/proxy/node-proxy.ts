// The node proxy: per enrolled pod, an outbound server (15001) and an inbound server (15006) on
// listening sockets opened inside the pod's namespace; relays each accepted connection.
import * as net from 'node:net';
import type { Logger } from '../telemetry';
import { channels } from '../telemetry';
import { ConnectionTracker, type TrackedConnection } from './connection-tracker';
import { relay, type RelayResult } from './relay';
import type {
  DestinationResolver, Dialer, OriginalDestinationSource, PodListenerFds, ProxyPod, SocketAddress,
} from './types';

export interface NodeProxyDeps {
  resolver: DestinationResolver;
  origins: OriginalDestinationSource;
  dialer: Dialer;
  log: Logger;
}

/** Matches the backlog the capture opens the pod's listeners with. */
const LISTEN_BACKLOG = 1024;

interface PodServers {
  pod: ProxyPod;
  servers: net.Server[];
}

/** One line per finished connection, on the `access` logger and the diagnostics channel. */
export interface AccessRecord {
  conn: string;
  direction: 'outbound' | 'inbound';
  pod: string;
  source: string;
  destination: string;
  upstream?: string;
  destinationService?: string;
  destinationWorkload?: string;
  bytesSent: number;
  bytesReceived: number;
  durationMs: number;
  error?: string;
}

function family(address: string | undefined): 4 | 6 {
  return address !== undefined && net.isIPv6(address) && !address.startsWith('::ffff:') ? 6 : 4;
}

function hostPort(ip: string | undefined, port: number | undefined): string {
  if (ip === undefined) return 'unknown';
  return net.isIPv6(ip) ? `[${ip}]:${port}` : `${ip}:${port}`;
}

function stripMapped(ip: string): string {
  return ip.startsWith('::ffff:') && net.isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
}

/**
 * Close listening sockets now. Not awaiting server.close()'s callback is deliberate: it fires only
 * once every connection the server accepted has ended, while the listening fd itself is closed at
 * once (and with it the kernel's socket-map entry).
 */
function stopAccepting(servers: net.Server[]): void {
  for (const server of servers) if (server.listening) server.close();
}

export class NodeProxy {
  private readonly pods = new Map<string, PodServers>();
  readonly tracker = new ConnectionTracker();
  private readonly log: Logger;
  private readonly access: Logger;

  constructor(private readonly deps: NodeProxyDeps) {
    this.log = deps.log.child({ component: 'proxy' });
    this.access = deps.log.child({ component: 'access' });
  }

  /** Start serving a pod's listeners. The fds are listening already (the kernel queues connections). */
  async addPod(pod: ProxyPod, fds: PodListenerFds): Promise<void> {
    const servers: net.Server[] = [];
    const open = async (fd: number, handler: (s: net.Socket) => void): Promise<void> => {
      const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, handler);
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        // listen({ fd }) calls listen(2) again; without a backlog Node would lower it to 511.
        server.listen({ fd, backlog: LISTEN_BACKLOG }, () => {
          server.off('error', reject);
          resolve();
        });
      });
      server.on('error', (err) => this.log.error({ err, pod: pod.uid }, 'listener error'));
    };
    try {
      for (const fd of fds.outbound) await open(fd, (s) => this.onOutbound(pod, s));
      for (const fd of fds.inbound) await open(fd, (s) => this.onInbound(pod, s));
    } catch (err) {
      for (const server of servers) server.close();
      throw err;
    }
    this.pods.set(pod.uid, { pod, servers });
  }

  /** Stop serving a pod: close its listeners and its open connections. */
  removePod(uid: string): void {
    const entry = this.pods.get(uid);
    if (!entry) return;
    this.pods.delete(uid);
    stopAccepting(entry.servers);
    this.tracker.destroyWhere((c) => c.podUid === uid);
  }

  hasPod(uid: string): boolean {
    return this.pods.has(uid);
  }

  /** Every pod's listeners are accepting. */
  listening(): boolean {
    for (const { servers } of this.pods.values()) {
      if (!servers.every((s) => s.listening)) return false;
    }
    return true;
  }

  /**
   * Graceful stop (SIGTERM): stop accepting at once — closing the listeners also removes them
   * from the kernel's socket map, so new connections are refused (fail closed) rather than
   * delivered around the mesh — then let open connections finish until the deadline, then close
   * what is left. Resolves when every connection is gone.
   */
  async drain(deadlineMs: number): Promise<{ finished: boolean; closed: number }> {
    for (const entry of this.pods.values()) stopAccepting(entry.servers);
    this.log.info({ open: this.tracker.size, deadlineMs }, 'draining');
    const finished = await this.tracker.waitForIdle(deadlineMs);
    const closed = finished ? 0 : this.tracker.destroyWhere(() => true);
    this.pods.clear();
    return { finished, closed };
  }

  private onOutbound(pod: ProxyPod, client: net.Socket): void {
    const id = this.tracker.nextId('outbound');
    const source = hostPort(client.remoteAddress, client.remotePort);
    const original = this.deps.origins.originalDestination(pod, client);
    if (!original) {
      this.log.warn({ conn: id, pod: pod.uid, source }, 'no original destination for captured connection; resetting');
      client.resetAndDestroy();
      return;
    }
    const resolved = this.deps.resolver.resolve(original.ip, original.port);
    let target: SocketAddress;
    const record: Partial<AccessRecord> = {};
    switch (resolved.kind) {
      case 'service':
        target = { family: family(resolved.endpoint.ip), ip: resolved.endpoint.ip, port: resolved.endpoint.port };
        record.destinationService = `${resolved.service.name}.${resolved.service.namespace}`;
        record.destinationWorkload = resolved.workload?.uid;
        break;
      case 'workload':
        target = original;
        record.destinationWorkload = resolved.workload.uid;
        break;
      case 'passthrough':
        target = original;
        break;
      case 'no-endpoints':
        this.finish(id, 'outbound', pod, source, hostPort(original.ip, original.port), undefined, { sent: 0, received: 0 }, Date.now(),
          { destinationService: `${resolved.service.name}.${resolved.service.namespace}`, error: 'no healthy endpoints' });
        client.resetAndDestroy();
        return;
    }
    this.connect(id, 'outbound', pod, client, source, hostPort(original.ip, original.port), target, record);
  }

  private onInbound(pod: ProxyPod, client: net.Socket): void {
    const id = this.tracker.nextId('inbound');
    const source = hostPort(client.remoteAddress, client.remotePort);
    // sk_lookup steered the SYN without rewriting it: the accepted socket's local address is the
    // address and port the peer dialled, which is where the app listens.
    const localIp = stripMapped(client.localAddress ?? '');
    const localPort = client.localPort ?? 0;
    if (!localIp || !localPort) {
      client.resetAndDestroy();
      return;
    }
    const target: SocketAddress = { family: family(localIp), ip: localIp, port: localPort };
    this.connect(id, 'inbound', pod, client, source, hostPort(localIp, localPort), target, { destinationWorkload: pod.uid });
  }

  private connect(
    id: string, direction: 'outbound' | 'inbound', pod: ProxyPod, client: net.Socket, source: string,
    destination: string, target: SocketAddress, record: Partial<AccessRecord>,
  ): void {
    const startedAt = Date.now();
    const tracked: TrackedConnection = { id, direction, podUid: pod.uid, source, destination, startedAt, sockets: [client] };
    this.tracker.add(tracked);
    client.on('error', () => { /* reported through the relay or the dial failure */ });
    this.log.debug({ conn: id, direction, pod: pod.uid, source, destination, upstream: hostPort(target.ip, target.port) }, 'accepted');
    this.deps.dialer.dial(pod.netnsPath, target).then(
      async (upstream) => {
        if (client.destroyed) {
          upstream.destroy();
          this.finish(id, direction, pod, source, destination, target, { sent: 0, received: 0 }, startedAt,
            { ...record, error: 'client closed before the upstream connection was made' });
          return;
        }
        tracked.sockets.push(upstream);
        client.resume();
        const result = await relay(client, upstream);
        this.finish(id, direction, pod, source, destination, target, result, startedAt, record);
      },
      (err: Error) => {
        client.resetAndDestroy();
        this.finish(id, direction, pod, source, destination, target, { sent: 0, received: 0 }, startedAt,
          { ...record, error: `connect ${hostPort(target.ip, target.port)}: ${err.message}` });
      },
    );
  }

  private finish(
    id: string, direction: 'outbound' | 'inbound', pod: ProxyPod, source: string, destination: string,
    target: SocketAddress | undefined, result: RelayResult, startedAt: number, extra: Partial<AccessRecord>,
  ): void {
    this.tracker.remove(id);
    const entry: AccessRecord = {
      conn: id, direction, pod: pod.uid, source, destination,
      upstream: target ? hostPort(target.ip, target.port) : undefined,
      destinationService: extra.destinationService, destinationWorkload: extra.destinationWorkload,
      bytesSent: result.sent, bytesReceived: result.received, durationMs: Date.now() - startedAt,
      error: extra.error ?? result.error?.message,
    };
    this.access.info(entry, `${direction} ${source} -> ${destination} proxied`);
    if (channels.connectionClosed.hasSubscribers) channels.connectionClosed.publish(entry);
  }
}
