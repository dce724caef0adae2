// Runs kubectl against one dev cluster: its kubeconfig, and a discovery cache inside its data directory so
// nothing is written to $HOME/.kube.
import { spawn } from 'node:child_process';
import type { CommandLine } from '../config';

export interface KubectlResult {
  stdout: string;
  stderr: string;
  /** kubectl's exit code; -1 when it was killed (the deadline, or a signal), with the reason in stderr. */
  code: number;
}

/** More output than this from one kubectl call is a runaway; the call is killed and reported. */
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;
export const KUBECTL_TIMEOUT_MS = 5 * 60_000;

export interface KubectlTarget {
  kubectl: CommandLine;
  kubeconfigPath: string;
  cacheDir: string;
}

/** One kubectl call without a shell. Never rejects for kubectl's own failures: the caller reads `code`. */
export function runKubectl(target: KubectlTarget, args: string[], input?: string, timeoutMs = KUBECTL_TIMEOUT_MS): Promise<KubectlResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      target.kubectl.command,
      [...target.kubectl.args, `--kubeconfig=${target.kubeconfigPath}`, `--cache-dir=${target.cacheDir}`, ...args],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let bytes = 0;
    let killedFor: string | undefined;
    const kill = (reason: string) => {
      if (killedFor === undefined) killedFor = reason;
      child.kill('SIGKILL');
    };
    const collect = (into: Buffer[]) => (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > MAX_OUTPUT_BYTES) kill(`more than ${MAX_OUTPUT_BYTES} bytes of output`);
      else into.push(chunk);
    };
    child.stdout.on('data', collect(out));
    child.stderr.on('data', collect(err));
    const timer = setTimeout(() => kill(`no exit within ${timeoutMs} ms`), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      let stderr = Buffer.concat(err).toString('utf8');
      if (killedFor !== undefined || code === null) stderr += `\nkubectl killed (${killedFor ?? `signal ${signal}`})`;
      resolve({ stdout: Buffer.concat(out).toString('utf8'), stderr, code: code ?? -1 });
    });
    // kubectl may exit before reading all of its input (a bad flag): that is its answer, not our error.
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? '');
  });
}
