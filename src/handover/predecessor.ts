// The running agent's side of a hand-over: it listens on the node's hand-over socket and, when its
// successor asks, freezes enrolment, sends every listening socket it serves (SCM_RIGHTS), and on `go`
// stops accepting — the successor already accepts on the same sockets, so no connection is refused —
// and drains what it still has open. A successor that goes away before `go` changes nothing: the
// predecessor carries on as before, its listeners never closed.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { dupFd, closeFd, fdOf, peerCredentials, sendFrame, unixConnect, unixListen } from '../native';
import type { Logger } from '../telemetry';
import { HandoverError } from './errors';
import {
  HANDOVER_PROTOCOL_VERSION,
  MAX_MESSAGE_BYTES,
  type ListenerMessage,
  type PredecessorMessages,
  type SuccessorMessages,
  decodeMessage,
  encodeMessage,
} from './protocol';

/** How long each step of the conversation may take the successor. */
export interface HandoverTimeouts {
  /** From its connect to its hello. */
  helloMs: number;
  /** From hello to request: the successor syncs its state and fetches certificates meanwhile. */
  requestMs: number;
  /** From the last listener sent to `go`: the successor adopts and serves them meanwhile. */
  goMs: number;
  /** One frame written. */
  sendMs: number;
}

export const HANDOVER_TIMEOUTS: HandoverTimeouts = { helloMs: 10_000, requestMs: 300_000, goMs: 120_000, sendMs: 10_000 };

/** One listening socket to hand over: what its frame says and the fd the agent serves it on. */
export interface OfferedListener {
  message: Omit<ListenerMessage, 'type'>;
  fd: number;
}

/** What the running agent does at each step; the server holds the conversation. */
export interface PredecessorRole {
  node: string;
  pinDir: string;
  cgroupId: bigint;
  pod?: string;
  /** Stop changing enrolment and list every listener served now (the fds stay the agent's). */
  freeze(successor: { pid: number; pod?: string }): Promise<OfferedListener[]>;
  /** The successor left before `go`: enrol and release as before. */
  thaw(reason: string): void;
  /** `go`: stop accepting on every listener (the successor accepts on them now); the open connections drain. */
  release(successor: { pid: number; pod?: string }): { open: number };
}

/** The hand-over socket's directory: made private to its owner, refused when someone else could reach it. */
function privateDirectory(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stat = fs.statSync(dir);
  const uid = process.geteuid?.() ?? 0;
  if (!stat.isDirectory() || stat.uid !== uid || (stat.mode & 0o077) !== 0) {
    throw new HandoverError(
      'FERRY_ERR_HANDOVER_SOCKET',
      `hand-over socket directory ${dir}: must be a directory owned by uid ${uid} with mode 0700 ` +
        `(it is owned by ${stat.uid}, mode ${(stat.mode & 0o777).toString(8)})`,
    );
  }
}

/**
 * Bind the hand-over socket at `socketPath`. Whatever is there is a stale socket of an agent that is
 * gone (a live one answers a connect, and then the caller should have been its successor).
 */
export function bindHandoverSocket(socketPath: string): number {
  privateDirectory(path.dirname(socketPath));
  let stat: fs.Stats | undefined;
  try {
    stat = fs.lstatSync(socketPath);
  } catch {
    stat = undefined;
  }
  if (stat) {
    if (!stat.isSocket()) {
      throw new HandoverError('FERRY_ERR_HANDOVER_SOCKET', `hand-over socket ${socketPath}: exists and is not a socket`);
    }
    try {
      const probe = unixConnect(socketPath);
      closeFd(probe.fd);
      throw new HandoverError(
        'FERRY_ERR_HANDOVER_SOCKET',
        `hand-over socket ${socketPath}: an agent (pid ${probe.pid}) listens there already`,
      );
    } catch (err) {
      if (err instanceof HandoverError) throw err;
      // ECONNREFUSED: nobody listens, the file is left over.
    }
    fs.unlinkSync(socketPath);
  }
  return unixListen(socketPath, 0o600);
}

/** A length-prefixed frame reader over a Node socket: each whole payload, or an error for a frame too long. */
class FrameReader {
  private buffered: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Buffer[] {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const frames: Buffer[] = [];
    while (this.buffered.length >= 4) {
      const length = this.buffered.readUInt32BE(0);
      if (length > MAX_MESSAGE_BYTES) {
        throw new HandoverError('FERRY_ERR_HANDOVER_PROTOCOL', `a frame of ${length} bytes (at most ${MAX_MESSAGE_BYTES})`);
      }
      if (this.buffered.length < 4 + length) break;
      frames.push(this.buffered.subarray(4, 4 + length));
      this.buffered = this.buffered.subarray(4 + length);
    }
    if (this.buffered.length > 4 + MAX_MESSAGE_BYTES) {
      throw new HandoverError('FERRY_ERR_HANDOVER_PROTOCOL', 'more bytes than one frame holds');
    }
    return frames;
  }
}

type Phase = 'hello' | 'request' | 'sending' | 'go' | 'gone';

/** The predecessor's end of the hand-over socket. One successor at a time; after a hand-over it listens no more. */
export class HandoverServer {
  private readonly server: net.Server;
  private active?: net.Socket;
  /** The successor's connection after a hand-over, kept open until this process exits (or close()). */
  private kept?: net.Socket;
  private handedOver = false;
  private readonly log: Logger;

  private constructor(
    private readonly socketPath: string,
    fd: number,
    private readonly role: PredecessorRole,
    log: Logger,
    private readonly timeouts: HandoverTimeouts,
  ) {
    this.log = log.child({ component: 'handover' });
    // Paused: the first bytes are read only once the peer's credentials are checked.
    this.server = net.createServer({ pauseOnConnect: true }, (socket) => this.onConnection(socket));
    this.server.on('error', (err) => this.log.error({ err }, 'hand-over socket error'));
    this.server.listen({ fd });
  }

  static listen(socketPath: string, role: PredecessorRole, log: Logger, timeouts = HANDOVER_TIMEOUTS): HandoverServer {
    return new HandoverServer(socketPath, bindHandoverSocket(socketPath), role, log, timeouts);
  }

  /** Whether this agent has handed its listeners over (and is draining). */
  get complete(): boolean {
    return this.handedOver;
  }

  /** Stop listening, and tell a successor this agent is gone; the socket file goes too unless a successor owns the path now. */
  close(): void {
    if (this.server.listening) this.server.close();
    this.kept?.destroy();
    if (!this.handedOver) fs.rmSync(this.socketPath, { force: true });
  }

  private onConnection(socket: net.Socket): void {
    socket.on('error', (err) => this.log.debug({ err }, 'hand-over connection error'));
    let credentials: { pid: number; uid: number };
    try {
      credentials = peerCredentials(fdOf(socket));
    } catch (err) {
      this.log.warn({ err }, 'hand-over connection without credentials; closed');
      socket.destroy();
      return;
    }
    const uid = process.geteuid?.() ?? 0;
    if (credentials.uid !== uid) {
      this.log.warn({ peer: credentials }, 'hand-over connection from another user; closed');
      socket.destroy();
      return;
    }
    if (this.active || this.handedOver) {
      const reason = this.handedOver ? 'this agent has handed over already' : 'a hand-over to another successor is in progress';
      void this.send(socket, { type: 'error', message: reason }, []).finally(() => socket.destroy());
      return;
    }
    this.active = socket;
    void this.converse(socket, credentials.pid).finally(() => {
      if (this.active === socket) this.active = undefined;
    });
  }

  /** The whole conversation with one successor; any failure before `go` thaws the agent and closes the socket. */
  private async converse(socket: net.Socket, peerPid: number): Promise<void> {
    const frames: Buffer[] = [];
    const reader = new FrameReader();
    let waiting: ((frame: Buffer | Error) => void) | undefined;
    let ended: Error | undefined;
    const deliver = (item: Buffer | Error): void => {
      if (waiting) {
        const w = waiting;
        waiting = undefined;
        w(item);
      } else if (item instanceof Error) ended ??= item;
      else frames.push(item);
    };
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const frame of reader.push(chunk)) deliver(frame);
      } catch (err) {
        deliver(err as Error);
        socket.pause();
      }
    });
    socket.on('close', () => deliver(new HandoverError('FERRY_ERR_HANDOVER_PEER', 'the successor closed the hand-over socket')));
    const next = <K extends keyof SuccessorMessages & string>(expected: K[], timeoutMs: number, step: Phase) =>
      new Promise<SuccessorMessages[K]>((resolve, reject) => {
        const take = (item: Buffer | Error): void => {
          clearTimeout(timer);
          if (item instanceof Error) reject(item);
          else {
            try {
              resolve(decodeMessage<SuccessorMessages, K>('successor', item, expected));
            } catch (err) {
              reject(err);
            }
          }
        };
        const timer = setTimeout(() => {
          waiting = undefined;
          reject(
            new HandoverError(
              'FERRY_ERR_HANDOVER_PROTOCOL',
              `no ${expected.join(' or ')} from the successor within ${timeoutMs} ms (${step})`,
            ),
          );
        }, timeoutMs);
        const queued = frames.shift();
        if (queued) take(queued);
        else if (ended) take(ended);
        else waiting = take;
      });
    socket.resume();

    let frozen = false;
    let successor: { pid: number; pod?: string } = { pid: peerPid };
    try {
      const hello = await next(['hello'], this.timeouts.helloMs, 'hello');
      successor = { pid: hello.pid, ...(hello.pod !== undefined ? { pod: hello.pod } : {}) };
      if (hello.node !== this.role.node || hello.pinDir !== this.role.pinDir) {
        throw new HandoverError(
          'FERRY_ERR_HANDOVER_PEER',
          `successor pid ${hello.pid} is for node ${hello.node} with pin directory ${hello.pinDir}; this agent is node ` +
            `${this.role.node} with ${this.role.pinDir}`,
        );
      }
      await this.send(socket, {
        type: 'hello',
        version: HANDOVER_PROTOCOL_VERSION,
        pid: process.pid,
        node: this.role.node,
        cgroupId: this.role.cgroupId.toString(),
        ...(this.role.pod !== undefined ? { pod: this.role.pod } : {}),
      });
      this.log.info({ successor }, 'successor connected; serving on until it asks for the listeners');
      await next(['request'], this.timeouts.requestMs, 'request');
      frozen = true;
      const offered = await this.role.freeze(successor);
      for (const listener of offered) await this.send(socket, { type: 'listener', ...listener.message }, [listener.fd]);
      await this.send(socket, { type: 'end', listeners: offered.length });
      this.log.info({ successor, listeners: offered.length }, 'listeners sent; both agents accept until the successor says go');
      await next(['go'], this.timeouts.goMs, 'go');
    } catch (err) {
      this.log.warn({ err, successor }, frozen ? 'hand-over abandoned; this agent carries on' : 'hand-over refused');
      if (!(err as HandoverError).message.includes('closed the hand-over socket')) {
        await this.send(socket, { type: 'error', message: (err as Error).message.slice(0, 8000) }).catch(() => undefined);
      }
      socket.destroy();
      if (frozen) this.role.thaw((err as Error).message);
      return;
    }
    this.handedOver = true;
    const { open } = this.role.release(successor);
    this.server.close();
    await this.send(socket, { type: 'gone', open }).catch((err: Error) =>
      this.log.warn({ err }, 'the successor did not take the last hand-over frame; it accepts on the listeners all the same'),
    );
    // The connection stays open until this process exits: its close tells the successor the predecessor is gone.
    this.kept = socket;
    this.log.info({ successor, open }, 'handed over: this agent accepts nothing more and drains its open connections');
  }

  /**
   * One frame with `fds` attached. Sent on a duplicate of the socket's fd, and each listener fd
   * duplicated too, so nothing the agent closes meanwhile can hand the number to another file.
   */
  private async send(socket: net.Socket, message: PredecessorMessages[keyof PredecessorMessages], fds: number[] = []): Promise<void> {
    const own: number[] = [];
    try {
      own.push(dupFd(fdOf(socket)));
      const attached = fds.map((fd) => {
        const copy = dupFd(fd);
        own.push(copy);
        return copy;
      });
      await sendFrame(own[0], encodeMessage(message), attached, this.timeouts.sendMs);
    } finally {
      for (const fd of own) closeFd(fd);
    }
  }
}
