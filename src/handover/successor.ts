// A starting agent's side of a hand-over: is a predecessor listening on the node's hand-over socket?
// If so, say hello first (so it knows a successor is coming), then — once this agent holds a synced
// state and its certificates — take every listening socket it serves, check each with the kernel
// (socketInfo: a listening TCP socket of the family, port and network namespace its frame names),
// serve them, and say go.
import * as net from 'node:net';
import { closeFd, netnsCookie, receiveFrame, sendFrame, socketInfo, unixConnect } from '../native';
import type { Logger } from '../telemetry';
import { HandoverError } from './errors';
import {
  HANDOVER_PROTOCOL_VERSION,
  type ListenerMessage,
  type NodeListenerKind,
  type PodRef,
  type PodListenerKind,
  type PredecessorHello,
  type PredecessorMessages,
  type SuccessorHello,
  decodeMessage,
  encodeMessage,
} from './protocol';

/** Each reply of the predecessor comes within this. */
const REPLY_MS = 10_000;

/** A pod's listeners as the predecessor served them: fds now this agent's. */
export interface TakenPodListeners {
  pod: PodRef;
  netnsCookie: bigint;
  byKind: Record<PodListenerKind, Array<{ fd: number; family: 4 | 6 }>>;
}

export interface TakenListeners {
  pods: Map<string, TakenPodListeners>;
  node: Partial<Record<NodeListenerKind, number>>;
}

/** The hello a successor sends. */
export interface SuccessorIdentity {
  node: string;
  pinDir: string;
  cgroupPath: string;
  pod?: string;
}

function isNoListener(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === 'ENOENT' || code === 'ECONNREFUSED';
}

/** Close every fd of `taken`. */
export function closeTaken(taken: TakenListeners): void {
  for (const pod of taken.pods.values()) for (const list of Object.values(pod.byKind)) for (const { fd } of list) closeFd(fd);
  for (const fd of Object.values(taken.node)) if (fd !== undefined) closeFd(fd);
}

export class PredecessorLink {
  private closed = false;

  private constructor(
    private readonly fd: number,
    readonly hello: PredecessorHello,
    private readonly log: Logger,
  ) {}

  /**
   * Connect and exchange hellos, or undefined when no agent listens at `socketPath` (nothing there,
   * or a socket file left by one that is gone). A predecessor that answers with an error, or for
   * another node, is an error: this agent must not start beside a live one it cannot take over from.
   */
  static async connect(socketPath: string, identity: SuccessorIdentity, log: Logger): Promise<PredecessorLink | undefined> {
    let connected: { fd: number; uid: number; pid: number };
    try {
      connected = unixConnect(socketPath);
    } catch (err) {
      if (isNoListener(err)) return undefined;
      throw new HandoverError('FERRY_ERR_HANDOVER_SOCKET', `hand-over socket ${socketPath}: ${(err as Error).message}`, { cause: err });
    }
    const uid = process.geteuid?.() ?? 0;
    const { fd } = connected;
    try {
      if (connected.uid !== uid) {
        throw new HandoverError('FERRY_ERR_HANDOVER_PEER', `hand-over socket ${socketPath} is held by uid ${connected.uid}, not ${uid}`);
      }
      const hello: SuccessorHello = {
        type: 'hello',
        version: HANDOVER_PROTOCOL_VERSION,
        pid: process.pid,
        node: identity.node,
        pinDir: identity.pinDir,
        cgroupPath: identity.cgroupPath,
        ...(identity.pod !== undefined ? { pod: identity.pod } : {}),
      };
      await sendFrame(fd, encodeMessage(hello), [], REPLY_MS);
      const link = new PredecessorLink(fd, (await PredecessorLink.read(fd, ['hello'], 'hello')).message, log);
      if (link.hello.node !== identity.node) {
        throw new HandoverError(
          'FERRY_ERR_HANDOVER_PEER',
          `the predecessor (pid ${link.hello.pid}) is node ${link.hello.node}, not ${identity.node}`,
        );
      }
      return link;
    } catch (err) {
      closeFd(fd);
      throw err;
    }
  }

  private static async read<K extends keyof PredecessorMessages & string>(
    fd: number,
    expected: K[],
    step: string,
  ): Promise<{ message: PredecessorMessages[K]; fds: number[] }> {
    const frame = await receiveFrame(fd, REPLY_MS);
    if (frame === null) throw new HandoverError('FERRY_ERR_HANDOVER_PEER', `the predecessor closed the hand-over socket (${step})`);
    try {
      const message = decodeMessage<PredecessorMessages, K | 'error'>('predecessor', frame.payload, [...expected, 'error']);
      if (message.type === 'error') {
        throw new HandoverError(
          'FERRY_ERR_HANDOVER_PEER',
          `the predecessor refused the hand-over: ${(message as { message: string }).message}`,
        );
      }
      if (message.type !== 'listener' && frame.fds.length > 0) {
        throw new HandoverError(
          'FERRY_ERR_HANDOVER_PROTOCOL',
          `${message.type} from the predecessor carried ${frame.fds.length} descriptors`,
        );
      }
      return { message: message as PredecessorMessages[K], fds: frame.fds };
    } catch (err) {
      for (const fd of frame.fds) closeFd(fd);
      throw err;
    }
  }

  /** The predecessor's cgroup id, whose marked sockets must pass capture while it drains. */
  get cgroupId(): bigint {
    return BigInt(this.hello.cgroupId);
  }

  /** Ask for every listener; each is checked with the kernel before it counts. On any failure none is kept. */
  async takeListeners(): Promise<TakenListeners> {
    await sendFrame(this.fd, encodeMessage({ type: 'request' }), [], REPLY_MS);
    const taken: TakenListeners = { pods: new Map(), node: {} };
    const ownNetns = await netnsCookie('/proc/self/ns/net');
    try {
      for (let count = 0; ; count++) {
        const { message, fds } = await PredecessorLink.read(this.fd, ['listener', 'end'], `listener ${count + 1}`);
        if (message.type === 'end') {
          if (message.listeners !== count) {
            throw new HandoverError(
              'FERRY_ERR_HANDOVER_PROTOCOL',
              `end from the predecessor counts ${message.listeners} listeners; ${count} came`,
            );
          }
          return taken;
        }
        const listener = message as ListenerMessage;
        if (fds.length !== 1) {
          for (const fd of fds) closeFd(fd);
          throw new HandoverError('FERRY_ERR_HANDOVER_PROTOCOL', `listener ${listener.kind} came with ${fds.length} descriptors, not 1`);
        }
        this.file(taken, listener, fds[0], ownNetns);
      }
    } catch (err) {
      closeTaken(taken);
      throw err;
    }
  }

  /** Check one listener against the kernel and file it; its fd is closed when it is not what its frame says. */
  private file(taken: TakenListeners, listener: ListenerMessage, fd: number, ownNetns: bigint): void {
    const where = listener.pod ? `pod ${listener.pod.namespace}/${listener.pod.name}` : 'the node';
    try {
      const info = socketInfo(fd);
      const netns = listener.pod ? BigInt(listener.pod.netnsCookie) : ownNetns;
      const problem = !info.tcp
        ? 'not a TCP socket'
        : !info.listening
          ? 'not listening'
          : info.family !== listener.family
            ? `IPv${info.family}, not IPv${listener.family}`
            : info.port !== listener.port
              ? `port ${info.port}, not ${listener.port}`
              : info.netnsCookie !== netns
                ? `in network namespace ${info.netnsCookie}, not ${netns}`
                : undefined;
      if (problem) throw new HandoverError('FERRY_ERR_HANDOVER_LISTENER', `${listener.kind} listener of ${where}: ${problem}`);
      const isPodKind = (k: string): k is PodListenerKind => k === 'outbound' || k === 'inbound' || k === 'hbone';
      if (listener.pod) {
        if (!isPodKind(listener.kind)) {
          throw new HandoverError('FERRY_ERR_HANDOVER_PROTOCOL', `listener ${listener.kind} names a pod; only pod listeners do`);
        }
        const entry = taken.pods.get(listener.pod.uid) ?? {
          pod: listener.pod,
          netnsCookie: netns,
          byKind: { outbound: [], inbound: [], hbone: [] },
        };
        taken.pods.set(listener.pod.uid, entry);
        entry.byKind[listener.kind].push({ fd, family: listener.family });
      } else {
        if (isPodKind(listener.kind)) throw new HandoverError('FERRY_ERR_HANDOVER_PROTOCOL', `listener ${listener.kind} names no pod`);
        if (taken.node[listener.kind] !== undefined) {
          throw new HandoverError('FERRY_ERR_HANDOVER_PROTOCOL', `a second ${listener.kind} listener of the node`);
        }
        taken.node[listener.kind] = fd;
      }
    } catch (err) {
      closeFd(fd);
      throw err;
    }
  }

  /** Every listener is served here now: the predecessor stops accepting. Its count of connections still open. */
  async go(): Promise<{ open: number }> {
    await sendFrame(this.fd, encodeMessage({ type: 'go' }), [], REPLY_MS);
    const { message } = await PredecessorLink.read(this.fd, ['gone'], 'gone');
    return { open: message.open };
  }

  /** `onExit` once the predecessor's process is gone (its end of the socket closes with it). */
  watchExit(onExit: () => void): void {
    const socket = new net.Socket({ fd: this.fd, readable: true, writable: false });
    this.closed = true;
    socket.on('error', () => undefined);
    socket.on('data', () => undefined);
    socket.once('close', onExit);
  }

  /** Give up on the hand-over: the predecessor carries on (it thaws when its socket closes). */
  abandon(): void {
    if (this.closed) return;
    this.closed = true;
    closeFd(this.fd);
    this.log.warn({ predecessor: this.hello.pid }, 'hand-over abandoned');
  }
}
