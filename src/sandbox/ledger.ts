// A record of everything a sandbox created, appended as it is made, so `down` (and a rollback of
// a failed `up`) removes exactly those names and nothing else.
import * as fs from 'node:fs';

export type LedgerEntry =
  | { kind: 'netns'; name: string }
  | { kind: 'cgroup'; path: string }
  | { kind: 'pin-dir'; path: string }
  | { kind: 'etc-netns'; path: string }
  /** A veth end in `netns`; its peer goes with it. Removed before the namespaces are. */
  | { kind: 'veth'; netns: string; name: string }
  /** A directory of the sandbox's own (inside its state dir), removed with everything in it. */
  | { kind: 'dir'; path: string }
  | { kind: 'process'; pid: number; role: string };

export class Ledger {
  constructor(readonly file: string) {}

  add(entry: LedgerEntry): void {
    fs.appendFileSync(this.file, `${JSON.stringify(entry)}\n`);
  }

  entries(): LedgerEntry[] {
    if (!fs.existsSync(this.file)) return [];
    return fs
      .readFileSync(this.file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as LedgerEntry);
  }
}
