// Copy bytes both ways between two TCP sockets with backpressure and half-close, counting bytes.
import type * as net from 'node:net';

export interface RelayResult {
  /** Bytes read from `downstream` and written to `upstream`. */
  sent: number;
  /** Bytes read from `upstream` and written to `downstream`. */
  received: number;
  error?: Error;
}

/**
 * Relay until both directions are done. Each direction is a `pipe`, which pauses the reader while
 * the writer's buffer is above its high-water mark (backpressure) and ends the writer when the
 * reader ends: a FIN from one side is forwarded as a FIN to the other while the reverse direction
 * keeps flowing (half-close; both sockets need allowHalfOpen). `stream.pipeline` is not used
 * because it destroys a duplex once one direction completes, which would cut the other.
 *
 * An error (or RST) on either socket resets the other, so a peer's abort is seen as an abort on
 * the far side, not as a clean end of stream.
 */
export function relay(downstream: net.Socket, upstream: net.Socket): Promise<RelayResult> {
  return new Promise((resolve) => {
    const result: RelayResult = { sent: 0, received: 0 };
    let closed = 0;
    let settled = false;

    const settle = (): void => {
      if (settled) return;
      settled = true;
      resolve(result);
    };
    const fail = (err: Error, other: net.Socket): void => {
      result.error ??= err;
      if (!other.destroyed) other.resetAndDestroy();
    };
    const onClose = (): void => {
      closed += 1;
      if (closed === 2) settle();
    };

    downstream.on('data', (chunk: Buffer) => { result.sent += chunk.length; });
    upstream.on('data', (chunk: Buffer) => { result.received += chunk.length; });
    downstream.on('error', (err) => fail(err, upstream));
    upstream.on('error', (err) => fail(err, downstream));
    downstream.on('close', onClose);
    upstream.on('close', onClose);
    downstream.pipe(upstream);
    upstream.pipe(downstream);
  });
}
