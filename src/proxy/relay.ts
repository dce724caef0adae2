// Copy bytes both ways between two duplexes — TCP sockets or HTTP/2 streams (an HBONE tunnel) —
// with backpressure and half-close, counting bytes; a reset on one side is a reset on the other.
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { addAbortSignal, type Duplex } from 'node:stream';
import { StreamResetError } from './errors';

export interface RelayResult {
  /** Bytes read from `downstream` and written to `upstream`. */
  sent: number;
  /** Bytes read from `upstream` and written to `downstream`. */
  received: number;
  error?: Error;
}

const { NGHTTP2_NO_ERROR } = http2.constants;

export function isHttp2Stream(end: Duplex): end is http2.Http2Stream {
  return !(end instanceof net.Socket) && 'rstCode' in end && typeof (end as http2.Http2Stream).close === 'function';
}

/**
 * Abort one end so its peer sees an abort, not a clean end of stream: a TCP RST for a socket,
 * RST_STREAM for an HTTP/2 stream (RFC 9113 §8.5: a reset CONNECT stream is the tunnel's TCP RST).
 * Not `stream.close(NGHTTP2_CANCEL)`: Node first ends a still-writable stream (END_STREAM, which
 * the peer would forward as a clean FIN) and only then sends the RST_STREAM. Destroying it through
 * an aborted AbortSignal sends RST_STREAM(CANCEL) alone (Node maps an AbortError to CANCEL).
 */
export function resetEnd(end: Duplex): void {
  if (end.destroyed) return;
  if (end instanceof net.Socket) end.resetAndDestroy();
  else if (isHttp2Stream(end)) addAbortSignal(AbortSignal.abort(), end);
  else end.destroy();
}

/** The stream was reset (RST_STREAM with an error code, or its session went away with one). */
function resetOf(stream: http2.Http2Stream): StreamResetError | undefined {
  const code = stream.rstCode;
  return code === undefined || code === NGHTTP2_NO_ERROR ? undefined : new StreamResetError(`HTTP/2 stream reset (code ${code})`, code);
}

/**
 * An HTTP/2 stream closed without an 'error' can still be an abort: the peer's RST_STREAM(CANCEL)
 * is not an error in Node, and a session that went away closes its streams with its own code. Only
 * a stream that saw END_STREAM both ways, closed with NO_ERROR, finished cleanly.
 */
function abortedStream(stream: http2.Http2Stream): StreamResetError | undefined {
  const reset = resetOf(stream);
  if (reset || (stream.readableEnded && stream.writableEnded)) return reset;
  return new StreamResetError('HTTP/2 stream closed before both sides finished', stream.rstCode);
}

/**
 * Relay until both directions are done. Each direction is a `pipe`, which pauses the reader while
 * the writer's buffer is above its high-water mark (backpressure; for an HTTP/2 stream a write
 * completes only once flow control let it out, so a slow peer stops the reader too) and ends the
 * writer when the reader ends: a FIN — or END_STREAM — from one side is forwarded as a FIN/END_STREAM
 * to the other while the reverse direction keeps flowing (half-close; sockets need allowHalfOpen,
 * HTTP/2 streams are always half-open). `stream.pipeline` is not used because it destroys a duplex
 * once one direction completes, which would cut the other.
 *
 * An error or reset on either side resets the other, so a peer's abort is seen as an abort on
 * the far side, not as a clean end of stream.
 */
export function relay(
  downstream: Duplex,
  upstream: Duplex,
  counts: { sent: number; received: number } = { sent: 0, received: 0 },
): Promise<RelayResult> {
  return new Promise((resolve) => {
    // `counts` is updated as bytes pass, so whoever holds it (metrics, /connections) sees them live.
    const result: RelayResult = counts;
    let closed = 0;

    const fail = (err: Error, other: Duplex): void => {
      result.error ??= err;
      resetEnd(other);
    };
    const onClose = (end: Duplex, other: Duplex): void => {
      if (isHttp2Stream(end)) {
        const aborted = abortedStream(end);
        if (aborted) fail(aborted, other);
      }
      closed += 1;
      if (closed === 2) resolve(result);
    };
    const watch = (end: Duplex, other: Duplex): void => {
      end.on('error', (err) => fail(err, other));
      end.on('close', () => onClose(end, other));
      if (!isHttp2Stream(end)) return;
      // Node ends the readable side of a cut-off stream too: 'aborted' then 'end' for a reset, and
      // 'end' from a stream already destroyed when its session went away (a peer's END_STREAM
      // ends a live stream). These run before pipe's own 'end' listener (added below), so the far
      // side is reset instead of receiving a FIN for a stream that was cut off.
      const check = (): void => {
        const reset =
          resetOf(end) ?? (end.destroyed ? new StreamResetError('HTTP/2 stream closed without END_STREAM', end.rstCode) : undefined);
        if (reset) fail(reset, other);
      };
      end.on('aborted', check);
      end.on('end', check);
    };

    downstream.on('data', (chunk: Buffer) => {
      result.sent += chunk.length;
    });
    upstream.on('data', (chunk: Buffer) => {
      result.received += chunk.length;
    });
    watch(downstream, upstream);
    watch(upstream, downstream);
    downstream.pipe(upstream);
    upstream.pipe(downstream);
  });
}
