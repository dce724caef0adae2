// Errors of src/identity (SPIFFE IDs, the CA, the CA directory, workload certificates), with stable codes.
import { FerryError } from '../errors';

export const IDENTITY_ERROR_CODES = {
  FERRY_ERR_IDENTITY_SPIFFE_ID: 'a SPIFFE ID, principal or identity field is malformed (the message names the part)',
  FERRY_ERR_IDENTITY_CSR: 'the CA refused a certificate signing request (bad signature, key or requested SAN)',
  FERRY_ERR_IDENTITY_CA: 'the CA could not be created or loaded, or could not sign (key, certificate or lifetime problem)',
  FERRY_ERR_IDENTITY_ROTATION: 'a root rotation phase was requested out of order (the message names the current phase)',
  FERRY_ERR_IDENTITY_CA_SERVICE:
    "the controller's CA service refused a call or could not be reached (the message carries the gRPC status), or its protocol file is missing",
  FERRY_ERR_IDENTITY_CERTIFICATE: 'a workload certificate could not be issued, or the chain the CA returned does not match the request',
} as const;

export type IdentityErrorCode = keyof typeof IDENTITY_ERROR_CODES;

export class IdentityError extends FerryError<IdentityErrorCode> {}
