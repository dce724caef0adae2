// What each agent reports back into the sandbox's CA directory: the CA generation it has loaded and
// who issued each of its certificates. `ferry sandbox ca rotate` waits on these between phases.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface AgentTrustStatus {
  node: string;
  pid: number;
  /** ca.json generation whose trust bundle the agent uses. */
  generation: number;
  certificates: Array<{ principal: string; issuer: string; notAfter: string }>;
}

const statusDir = (caDir: string): string => path.join(caDir, 'status');

/** Written atomically (temporary name, then rename), so a reader never sees half a document. */
export function writeAgentTrustStatus(caDir: string, status: AgentTrustStatus): void {
  fs.mkdirSync(statusDir(caDir), { recursive: true, mode: 0o700 });
  const file = path.join(statusDir(caDir), `${status.node}.json`);
  const temporary = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(temporary, JSON.stringify(status), { mode: 0o600 });
  fs.renameSync(temporary, file);
}

export function readAgentTrustStatus(caDir: string, node: string): AgentTrustStatus | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(statusDir(caDir), `${node}.json`), 'utf8')) as AgentTrustStatus;
  } catch {
    return undefined;
  }
}

/** The issuer name a leaf signed by this authority certificate carries, in WorkloadCertificate.issuer's form. */
export function issuerNameOf(authorityCertPem: string): string {
  return new crypto.X509Certificate(authorityCertPem).subject.split('\n').join(', ');
}
