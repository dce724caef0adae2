// Test PKI for the HBONE tests: a CA made with @peculiar/x509, workload certificates with one SPIFFE
// URI SAN, and FakeTlsProvider — a stand-in for src/identity's TlsProvider over those certificates.
import { createPrivateKey, webcrypto, type X509Certificate } from 'node:crypto';
import * as tls from 'node:tls';
import * as x509 from '@peculiar/x509';
import type { IdentityContexts, PeerIdentity, TlsProvider } from '../../src/proxy';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };

export interface Issued {
  certPem: string;
  keyPem: string;
  notAfter: Date;
}

export interface TestCa {
  pem: string;
  /** A leaf certificate with exactly these URI SANs (usually one spiffe:// ID). */
  issue(uris: string[], options?: { notAfter?: Date; notBefore?: Date }): Promise<Issued>;
}

let serial = 1;

async function keyPem(key: webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({ format: 'pem', type: 'pkcs8' }).toString();
}

export async function createCa(name = 'ferry test ca'): Promise<TestCa> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: (serial++).toString(16).padStart(2, '0'),
    name: `CN=${name}`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 24 * 3600_000),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  return {
    pem: ca.toString('pem'),
    async issue(uris, options = {}) {
      const leafKeys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
      const notAfter = options.notAfter ?? new Date(Date.now() + 3600_000);
      const leaf = await x509.X509CertificateGenerator.create({
        serialNumber: (serial++).toString(16).padStart(2, '0'),
        subject: '',
        issuer: ca.subject,
        notBefore: options.notBefore ?? new Date(Date.now() - 60_000),
        notAfter,
        signingKey: keys.privateKey,
        publicKey: leafKeys.publicKey,
        signingAlgorithm: ALG,
        extensions: [
          new x509.SubjectAlternativeNameExtension(
            uris.map((value) => ({ type: 'url' as const, value })),
            true,
          ),
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        ],
      });
      return { certPem: leaf.toString('pem'), keyPem: await keyPem(leafKeys.privateKey), notAfter };
    },
  };
}

export function spiffe(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

export function contextsOf(issued: Issued, bundlePem: string): IdentityContexts {
  const options = { key: issued.keyPem, cert: issued.certPem, ca: bundlePem, minVersion: 'TLSv1.3' as const };
  return { client: tls.createSecureContext(options), server: tls.createSecureContext(options), notAfter: issued.notAfter };
}

/** A fake TlsProvider: the identity module's job (CSR, rotation) is done by the test through `add`. */
export class FakeTlsProvider implements TlsProvider {
  private readonly byPrincipal = new Map<string, IdentityContexts>();

  constructor(
    readonly ca: TestCa,
    readonly trustDomain = 'cluster.local',
  ) {}

  principalFor(namespace: string, serviceAccount: string): string {
    return `${this.trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
  }

  /** Issue (or re-issue) the certificate of a workload identity. */
  async add(namespace: string, serviceAccount: string, options?: { notAfter?: Date }): Promise<Issued> {
    const issued = await this.ca.issue([spiffe(this.trustDomain, namespace, serviceAccount)], options);
    this.byPrincipal.set(this.principalFor(namespace, serviceAccount), contextsOf(issued, this.ca.pem));
    return issued;
  }

  contexts(principal: string): IdentityContexts | undefined {
    return this.byPrincipal.get(principal);
  }

  peerIdentity(certificate: X509Certificate): PeerIdentity {
    const entries = (certificate.subjectAltName ?? '').split(', ').filter((e) => e.length > 0);
    const uris = entries.filter((e) => e.startsWith('URI:'));
    if (uris.length !== 1) throw new Error(`expected exactly one URI SAN, found ${uris.length}`);
    const match = /^URI:spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(uris[0]);
    if (!match) throw new Error(`not a workload SPIFFE ID: ${uris[0]}`);
    const [, trustDomain, namespace, serviceAccount] = match;
    if (trustDomain !== this.trustDomain) throw new Error(`trust domain ${trustDomain} is not ${this.trustDomain}`);
    return { trustDomain, namespace, serviceAccount, principal: this.principalFor(namespace, serviceAccount) };
  }
}
