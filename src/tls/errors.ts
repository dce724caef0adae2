// Errors of src/tls, with stable codes.
import { FerryError } from '../errors';

export const TLS_ERROR_CODES = {
  FERRY_ERR_TLS_PEER_IDENTITY: 'a peer certificate does not carry an acceptable SPIFFE identity (`reason` says why)',
} as const;

/** Why a peer certificate was refused; stable strings for metrics and access logs. */
export type PeerRejection =
  | 'unreadable'
  | 'ca-certificate'
  | 'no-uri-san'
  | 'multiple-uri-sans'
  | 'not-spiffe'
  | 'trust-domain'
  | 'unexpected-identity';

export class PeerIdentityError extends FerryError<keyof typeof TLS_ERROR_CODES> {
  constructor(
    readonly reason: PeerRejection,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('FERRY_ERR_TLS_PEER_IDENTITY', message, options);
  }
}
