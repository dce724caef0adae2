// @peculiar/x509 bound to Node's WebCrypto, and the few PEM/key helpers the CA and the workload
// certificate manager share. Every module of src/identity takes x509 from here.
import { X509Certificate, webcrypto, randomBytes } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export type CryptoKey = webcrypto.CryptoKey;
export type CryptoKeyPair = webcrypto.CryptoKeyPair;

export { x509 };

/** ECDSA P-256 with SHA-256 everywhere: what the X.509-SVID ecosystem (Istio, SPIRE) defaults to. */
export const EC_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export const subtle = webcrypto.subtle;

export function generateKeyPair(extractable: boolean): Promise<CryptoKeyPair> {
  return subtle.generateKey(EC_ALGORITHM, extractable, ['sign', 'verify']) as Promise<CryptoKeyPair>;
}

export async function exportPkcs8Pem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await subtle.exportKey('pkcs8', key));
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

export async function importPkcs8Pem(pem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decodeFirst(pem);
  return subtle.importKey('pkcs8', der, EC_ALGORITHM, false, ['sign']) as Promise<CryptoKey>;
}

/**
 * A random 128-bit serial as hex. RFC 5280 §4.1.2.2: positive, unique per CA, at most 20 octets;
 * CA/B Forum asks for at least 64 random bits. x509 prefixes 00 when the high bit is set (so the
 * INTEGER stays positive); a zero first octet would not be minimal DER, so it is avoided.
 */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  if (bytes[0] === 0) bytes[0] = 1;
  return bytes.toString('hex');
}

/** Split a PEM bundle into its certificates (each re-encoded with a trailing newline). */
export function splitPem(bundle: string): string[] {
  return x509.PemConverter.decode(bundle).map((der) => `${x509.PemConverter.encode(der, 'CERTIFICATE')}\n`);
}

/** The URI SANs of a SAN extension; throws if the extension holds a name x509 cannot read (otherName). */
export function uriSans(extension: x509.SubjectAlternativeNameExtension | null): string[] {
  if (extension === null) return [];
  return extension.names.items.filter((n) => n.type === 'url').map((n) => n.value);
}

/** What peer verification needs from a DER certificate: its URI SANs and whether it claims to be a CA. */
export function readCertificateNames(der: Uint8Array): { uris: string[]; ca: boolean } {
  const cert = new x509.X509Certificate(der);
  return {
    uris: uriSans(cert.getExtension(x509.SubjectAlternativeNameExtension)),
    ca: cert.getExtension(x509.BasicConstraintsExtension)?.ca === true,
  };
}

/** The issuer name a leaf signed by this authority certificate carries, in WorkloadCertificate.issuer's form. */
export function issuerNameOf(authorityCertPem: string): string {
  return new X509Certificate(authorityCertPem).subject.split('\n').join(', ');
}
