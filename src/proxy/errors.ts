// Errors of src/proxy, with stable codes: HBONE tunnel set-up failures the pool reports to the
// caller, resets seen by the relay, and bad options.
import { FerryError } from '../errors';

export const PROXY_ERROR_CODES = {
  FERRY_ERR_PROXY_OPTIONS: 'a NodeProxy, HBONE pool or HBONE server option is out of range (the message names the field)',
  FERRY_ERR_PROXY_STREAM_RESET: 'a relayed HTTP/2 stream was reset (RST_STREAM) or its session went away before both sides finished',
  FERRY_ERR_HBONE_NO_IDENTITY: 'no certificate has been issued (yet) for the identity an HBONE tunnel must be opened as',
  FERRY_ERR_HBONE_DIAL:
    "the TCP connection to the peer's HBONE port could not be made, or the peer is backing off after recent failures (the message names the peer and its last failure)",
  FERRY_ERR_HBONE_TLS: 'the mutual TLS 1.3 handshake with the HBONE peer failed (untrusted chain, no ALPN h2, timeout, closed)',
  FERRY_ERR_HBONE_IDENTITY: "the HBONE peer's certificate does not carry exactly the expected SPIFFE identity",
  FERRY_ERR_HBONE_STATUS: 'the HBONE peer answered the CONNECT with a status other than 200',
  FERRY_ERR_HBONE_STREAM: 'the HBONE CONNECT stream or its HTTP/2 session failed before the peer answered',
  FERRY_ERR_HBONE_POOL_CLOSED: 'the HBONE connection pool was closed (agent draining or stopping)',
} as const;

type ProxyErrorCode = keyof typeof PROXY_ERROR_CODES;

export class ProxyOptionsError extends FerryError<'FERRY_ERR_PROXY_OPTIONS'> {
  constructor(message: string) {
    super('FERRY_ERR_PROXY_OPTIONS', message);
  }
}

export class StreamResetError extends FerryError<'FERRY_ERR_PROXY_STREAM_RESET'> {
  constructor(
    message: string,
    readonly rstCode?: number,
  ) {
    super('FERRY_ERR_PROXY_STREAM_RESET', message);
  }
}

/** Why an HBONE tunnel or stream could not be opened; `open()` rejects with one of these. */
export class HboneError<Code extends ProxyErrorCode = ProxyErrorCode> extends FerryError<Code> {}

export class HboneNoIdentityError extends HboneError<'FERRY_ERR_HBONE_NO_IDENTITY'> {
  constructor(principal: string) {
    super('FERRY_ERR_HBONE_NO_IDENTITY', `no certificate for ${principal} yet`);
  }
}

export class HboneDialError extends HboneError<'FERRY_ERR_HBONE_DIAL'> {
  /** Set when the open failed fast: the peer (`ip:port (principal)`), its last failure, and when it may be dialled again. */
  readonly peer?: string;
  readonly lastFailure?: string;
  readonly retryAt?: Date;

  constructor(message: string, options?: { cause?: unknown; peer?: string; lastFailure?: string; retryAt?: Date }) {
    super('FERRY_ERR_HBONE_DIAL', message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.peer = options?.peer;
    this.lastFailure = options?.lastFailure;
    this.retryAt = options?.retryAt;
  }
}

export class HboneTlsError extends HboneError<'FERRY_ERR_HBONE_TLS'> {
  /** Short machine-readable reason: an OpenSSL verify code, 'ALPN', 'TIMEOUT', 'CLOSED'… */
  constructor(
    readonly reason: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('FERRY_ERR_HBONE_TLS', message, options);
  }
}

export class HboneIdentityError extends HboneError<'FERRY_ERR_HBONE_IDENTITY'> {
  constructor(message: string, options?: { cause?: unknown }) {
    super('FERRY_ERR_HBONE_IDENTITY', message, options);
  }
}

export class HboneStatusError extends HboneError<'FERRY_ERR_HBONE_STATUS'> {
  constructor(
    readonly status: number,
    target: string,
  ) {
    super('FERRY_ERR_HBONE_STATUS', `CONNECT ${target} answered ${status}`);
  }
}

export class HboneStreamError extends HboneError<'FERRY_ERR_HBONE_STREAM'> {
  constructor(message: string, options?: { cause?: unknown }) {
    super('FERRY_ERR_HBONE_STREAM', message, options);
  }
}

export class HbonePoolClosedError extends HboneError<'FERRY_ERR_HBONE_POOL_CLOSED'> {
  constructor() {
    super('FERRY_ERR_HBONE_POOL_CLOSED', 'the HBONE pool is closed');
  }
}
