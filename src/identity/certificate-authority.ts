// The mesh CA: ECDSA P-256 roots and intermediates, and the signer that turns a workload's CSR into an
// X.509-SVID (SPIFFE X.509-SVID spec) chain. Also the service interface agents use to reach a CA.
import { IdentityError } from './errors';
import { checkTrustDomain, spiffeUri, type SpiffeId } from './spiffe';
import { EC_ALGORITHM, exportPkcs8Pem, generateKeyPair, importPkcs8Pem, randomSerial, x509, type CryptoKey } from './x509';

export const DEFAULT_CERT_TTL_SECONDS = 24 * 60 * 60;
export const DEFAULT_ROOT_TTL_SECONDS = 10 * 365 * 24 * 60 * 60;
/** notBefore is backdated this much so a peer whose clock is slightly behind still accepts a new certificate. */
export const CLOCK_SKEW_SECONDS = 60;

export interface SignRequest {
  /** PKCS#10, PEM; must request exactly one URI SAN, `spiffeUri(identity)`. */
  csrPem: string;
  identity: SpiffeId;
  ttlSeconds: number;
}

export interface SignResponse {
  /** Leaf first, then any intermediates; never the root (peers hold it in their bundle). */
  chainPem: string[];
}

/** What an agent needs of a CA: signing, and the roots to trust (several while a root rotates). */
export interface CertificateAuthorityClient {
  sign(request: SignRequest): Promise<SignResponse>;
  trustBundle(): Promise<string[]>;
}

/** A signing authority's certificate and (PKCS#8) key. */
export interface AuthorityMaterial {
  certPem: string;
  keyPem: string;
}

interface AuthorityOptions {
  trustDomain: string;
  /** Appears in the subject CN, so roots of successive rotations have distinct names. */
  name: string;
  lifetimeSeconds?: number;
  now?: Date;
}

const SAN_OID = '2.5.29.17';

function pem(cert: x509.X509Certificate): string {
  return `${cert.toString('pem')}\n`;
}

function checkSeconds(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new IdentityError('FERRY_ERR_IDENTITY_CA', `${what} must be a positive whole number of seconds, got ${value}`);
  }
}

function caExtensions(pathLength: number | undefined): x509.Extension[] {
  // RFC 5280 §4.2.1.9: basicConstraints MUST be critical in CA certificates; §4.2.1.3: keyCertSign
  // (and cRLSign) for a key that signs certificates, and marking keyUsage critical is recommended.
  return [
    new x509.BasicConstraintsExtension(true, pathLength, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
  ];
}

function subjectKeyId(cert: x509.X509Certificate, what: string): string {
  const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
  if (ski === null) throw new IdentityError('FERRY_ERR_IDENTITY_CA', `${what}: certificate has no subjectKeyIdentifier`);
  return ski.keyId;
}

/** A self-signed root (RFC 5280 §4.2.1.1: a self-signed root MAY omit the AKI; SKI is required for CAs). */
export async function createRootAuthority(options: AuthorityOptions): Promise<AuthorityMaterial> {
  checkTrustDomain(options.trustDomain);
  const lifetime = options.lifetimeSeconds ?? DEFAULT_ROOT_TTL_SECONDS;
  checkSeconds(lifetime, 'root lifetimeSeconds');
  const now = options.now ?? new Date();
  const keys = await generateKeyPair(true);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: [{ O: [options.trustDomain] }, { CN: [`Ferry root CA ${options.name}`] }],
    keys,
    serialNumber: randomSerial(),
    notBefore: new Date(now.getTime() - CLOCK_SKEW_SECONDS * 1000),
    notAfter: new Date(now.getTime() + lifetime * 1000),
    signingAlgorithm: EC_ALGORITHM,
    extensions: [...caExtensions(undefined), await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)],
  });
  return { certPem: pem(cert), keyPem: await exportPkcs8Pem(keys.privateKey) };
}

/** An intermediate signed by `parent`, pathLen 0 (it signs leaves only); never outlives its parent. */
export async function createIntermediateAuthority(parent: AuthorityMaterial, options: AuthorityOptions): Promise<AuthorityMaterial> {
  checkTrustDomain(options.trustDomain);
  const lifetime = options.lifetimeSeconds ?? DEFAULT_ROOT_TTL_SECONDS;
  checkSeconds(lifetime, 'intermediate lifetimeSeconds');
  const now = options.now ?? new Date();
  const parentCert = new x509.X509Certificate(parent.certPem);
  const keys = await generateKeyPair(true);
  const cert = await x509.X509CertificateGenerator.create({
    subject: [{ O: [options.trustDomain] }, { CN: [`Ferry intermediate CA ${options.name}`] }],
    issuer: parentCert.subjectName,
    publicKey: keys.publicKey,
    signingKey: await importPkcs8Pem(parent.keyPem),
    serialNumber: randomSerial(),
    notBefore: new Date(Math.max(now.getTime() - CLOCK_SKEW_SECONDS * 1000, parentCert.notBefore.getTime())),
    notAfter: new Date(Math.min(now.getTime() + lifetime * 1000, parentCert.notAfter.getTime())),
    signingAlgorithm: EC_ALGORITHM,
    extensions: [
      ...caExtensions(0),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      new x509.AuthorityKeyIdentifierExtension(subjectKeyId(parentCert, 'parent authority')),
    ],
  });
  return { certPem: pem(cert), keyPem: await exportPkcs8Pem(keys.privateKey) };
}

export interface CertificateAuthorityOptions {
  trustDomain: string;
  /** The authority that signs leaves: a root, or an intermediate. */
  issuer: AuthorityMaterial;
  /** Sent after the leaf: the issuer when it is an intermediate (the default works this out); never a root. */
  issuerChainPem?: string[];
  /** The trust bundle this CA announces (the issuer's root, plus the other one during a rotation). */
  roots: string[];
  /** Milliseconds since the epoch; injectable for tests. */
  now?: () => number;
}

/** Signs workload CSRs in process. Implements CertificateAuthorityClient directly. */
export class CertificateAuthority implements CertificateAuthorityClient {
  readonly trustDomain: string;
  readonly issuerCertPem: string;
  readonly #issuer: x509.X509Certificate;
  readonly #issuerKeyId: string;
  readonly #key: CryptoKey;
  readonly #chain: string[];
  readonly #roots: string[];
  readonly #now: () => number;

  private constructor(options: CertificateAuthorityOptions, issuer: x509.X509Certificate, key: CryptoKey, chain: string[]) {
    this.trustDomain = options.trustDomain;
    this.issuerCertPem = options.issuer.certPem;
    this.#issuer = issuer;
    this.#issuerKeyId = subjectKeyId(issuer, 'CA issuer');
    this.#key = key;
    this.#roots = [...options.roots];
    this.#now = options.now ?? Date.now;
    this.#chain = chain;
  }

  /** Build a CA over existing material (checks the issuer really is a CA of this trust domain's mesh). */
  static async load(options: CertificateAuthorityOptions): Promise<CertificateAuthority> {
    checkTrustDomain(options.trustDomain);
    let issuer: x509.X509Certificate;
    let key: CryptoKey;
    try {
      issuer = new x509.X509Certificate(options.issuer.certPem);
      key = await importPkcs8Pem(options.issuer.keyPem);
    } catch (err) {
      throw new IdentityError('FERRY_ERR_IDENTITY_CA', `CA issuer: unreadable certificate or key: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const constraints = issuer.getExtension(x509.BasicConstraintsExtension);
    if (constraints === null || !constraints.ca) {
      throw new IdentityError('FERRY_ERR_IDENTITY_CA', `CA issuer ${issuer.subject}: basicConstraints cA is not true`);
    }
    if (options.roots.length === 0) throw new IdentityError('FERRY_ERR_IDENTITY_CA', 'CA roots: the trust bundle is empty');
    // A root is never sent (peers hold it); an intermediate issuer is, after the leaf.
    const chain = options.issuerChainPem ?? ((await issuer.isSelfSigned()) ? [] : [options.issuer.certPem]);
    return new CertificateAuthority(options, issuer, key, chain);
  }

  /** A fresh in-memory CA (a root, and an intermediate under it when asked): for tests and single-process use. */
  static async generate(options: {
    trustDomain: string;
    intermediate?: boolean;
    rootLifetimeSeconds?: number;
    now?: () => number;
  }): Promise<CertificateAuthority> {
    const at = new Date((options.now ?? Date.now)());
    const base = { trustDomain: options.trustDomain, lifetimeSeconds: options.rootLifetimeSeconds, now: at };
    const root = await createRootAuthority({ ...base, name: 'in-memory' });
    const issuer = options.intermediate === true ? await createIntermediateAuthority(root, { ...base, name: 'in-memory' }) : root;
    return CertificateAuthority.load({ trustDomain: options.trustDomain, issuer, roots: [root.certPem], now: options.now });
  }

  async trustBundle(): Promise<string[]> {
    return [...this.#roots];
  }

  /** Verify the CSR and issue a leaf for exactly `spiffeUri(identity)`. */
  async sign(request: SignRequest): Promise<SignResponse> {
    checkSeconds(request.ttlSeconds, 'sign request ttlSeconds');
    const uri = spiffeUri(request.identity);
    if (request.identity.trustDomain !== this.trustDomain) {
      throw new IdentityError(
        'FERRY_ERR_IDENTITY_CSR',
        `CSR for ${uri}: trust domain "${request.identity.trustDomain}" is not this CA's "${this.trustDomain}"`,
      );
    }
    const csr = await verifiedCsr(request.csrPem, uri);
    return { chainPem: await this.#issue(csr.publicKey, [{ type: 'url', value: uri }], request.ttlSeconds) };
  }

  /**
   * A serving certificate for a mesh component that clients reach by name (the controller's gRPC endpoint): the
   * component's SPIFFE ID and its DNS names, with a key made here. Clients check the name against the chain to
   * the mesh's roots, as for any TLS server.
   */
  async issueServing(request: {
    identity: SpiffeId;
    dnsNames: string[];
    ttlSeconds: number;
  }): Promise<AuthorityMaterial & { chainPem: string[] }> {
    checkSeconds(request.ttlSeconds, 'serving certificate ttlSeconds');
    if (request.identity.trustDomain !== this.trustDomain) {
      throw new IdentityError(
        'FERRY_ERR_IDENTITY_CA',
        `serving certificate: trust domain "${request.identity.trustDomain}" is not this CA's "${this.trustDomain}"`,
      );
    }
    const keys = await generateKeyPair(true);
    const names = [
      { type: 'url' as const, value: spiffeUri(request.identity) },
      ...request.dnsNames.map((value) => ({ type: 'dns' as const, value })),
    ];
    const chainPem = await this.#issue(keys.publicKey, names, request.ttlSeconds);
    return { certPem: chainPem[0], keyPem: await exportPkcs8Pem(keys.privateKey), chainPem };
  }

  /** A leaf for `publicKey` with these SANs, signed by the issuer; the chain to send, leaf first. */
  async #issue(
    publicKey: CryptoKey | x509.PublicKey,
    names: { type: 'url' | 'dns'; value: string }[],
    ttlSeconds: number,
  ): Promise<string[]> {
    const now = this.#now();
    // The issued lifetime is [now - skew, now + ttl], clipped to the issuer's own validity: RFC 5280
    // §6.1.3 checks every certificate of the path at validation time, so a leaf outliving its
    // issuer would only look valid.
    const notBefore = Math.max(now - CLOCK_SKEW_SECONDS * 1000, this.#issuer.notBefore.getTime());
    const notAfter = Math.min(now + ttlSeconds * 1000, this.#issuer.notAfter.getTime());
    if (notAfter <= now) {
      throw new IdentityError(
        'FERRY_ERR_IDENTITY_CA',
        `CA issuer ${this.#issuer.subject} expired at ${this.#issuer.notAfter.toISOString()}`,
      );
    }
    const leaf = await x509.X509CertificateGenerator.create({
      // SPIFFE X.509-SVID spec §2: the SPIFFE ID lives in the URI SAN; the subject may be empty, and
      // then RFC 5280 §4.2.1.6 requires subjectAltName to be critical.
      subject: '',
      issuer: this.#issuer.subjectName,
      publicKey,
      signingKey: this.#key,
      serialNumber: randomSerial(),
      notBefore: new Date(notBefore),
      notAfter: new Date(notAfter),
      signingAlgorithm: EC_ALGORITHM,
      extensions: [
        new x509.SubjectAlternativeNameExtension(names, true),
        // X.509-SVID spec §4.1, §4.3: a leaf SVID has cA false, digitalSignature, no keyCertSign/cRLSign.
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
        // §4.4: serverAuth and clientAuth, since the same SVID dials and serves HBONE.
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        new x509.AuthorityKeyIdentifierExtension(this.#issuerKeyId),
        await x509.SubjectKeyIdentifierExtension.create(publicKey),
      ],
    });
    return [pem(leaf), ...this.#chain];
  }
}

/** Parse and check a CSR: its signature, a P-256 key, and a request for exactly the one URI SAN `uri`. */
async function verifiedCsr(csrPem: string, uri: string): Promise<x509.Pkcs10CertificateRequest> {
  const refuse = (problem: string, cause?: unknown): never => {
    throw new IdentityError('FERRY_ERR_IDENTITY_CSR', `CSR for ${uri}: ${problem}`, { cause });
  };
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (err) {
    return refuse(`not a PEM PKCS#10 request: ${(err as Error).message}`, err);
  }
  if (!(await csr.verify().catch(() => false))) refuse("the signature does not verify with the request's own key");
  const algorithm = csr.publicKey.algorithm as { name?: string; namedCurve?: string };
  if (algorithm.name !== 'ECDSA' || algorithm.namedCurve !== 'P-256') {
    refuse(`the key is ${algorithm.name ?? 'unknown'} ${algorithm.namedCurve ?? ''}, expected ECDSA P-256`.trimEnd());
  }
  const sans = csr.getExtensions(SAN_OID);
  if (sans.length !== 1) refuse(`expected one subjectAltName extension, found ${sans.length}`);
  let names: { type: string; value: string }[];
  try {
    names = new x509.SubjectAlternativeNameExtension(sans[0].rawData).names.toJSON();
  } catch (err) {
    return refuse(`unreadable subjectAltName: ${(err as Error).message}`, err);
  }
  if (names.length !== 1 || names[0].type !== 'url' || names[0].value !== uri) {
    const found = names.map((n) => `${n.type === 'url' ? 'URI' : n.type.toUpperCase()}:${n.value}`).join(', ') || 'none';
    refuse(`must request exactly the URI SAN ${uri}, found ${found}`);
  }
  return csr;
}
