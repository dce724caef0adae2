// Original file: proto/ferry/ca/v1/ca.proto


export interface SignRequest {
  /**
   * PKCS#10, PEM: an ECDSA P-256 key and exactly one URI SAN,
   * spiffe://<trust-domain>/ns/<namespace>/sa/<service_account>.
   */
  'csrPem'?: (string);
  'namespace'?: (string);
  'serviceAccount'?: (string);
  /**
   * Requested lifetime; 0 asks for the CA's default. The CA clamps it to its own range and never
   * issues past its issuer's notAfter.
   */
  'ttlSeconds'?: (number);
  /**
   * Optional: the pod on whose behalf the agent asks. When set, that pod (by UID, and by name when
   * given) must be the one on the agent's node running as the service account.
   */
  'podUid'?: (string);
  'podName'?: (string);
}

export interface SignRequest__Output {
  /**
   * PKCS#10, PEM: an ECDSA P-256 key and exactly one URI SAN,
   * spiffe://<trust-domain>/ns/<namespace>/sa/<service_account>.
   */
  'csrPem': (string);
  'namespace': (string);
  'serviceAccount': (string);
  /**
   * Requested lifetime; 0 asks for the CA's default. The CA clamps it to its own range and never
   * issues past its issuer's notAfter.
   */
  'ttlSeconds': (number);
  /**
   * Optional: the pod on whose behalf the agent asks. When set, that pod (by UID, and by name when
   * given) must be the one on the agent's node running as the service account.
   */
  'podUid': (string);
  'podName': (string);
}
