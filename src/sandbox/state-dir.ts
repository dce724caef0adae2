// Where a sandbox keeps its state (plan, ledger, logs, agent settings, Prometheus; the API sandbox's files in
// api-sandbox.ts apiPaths) under /run/ferry/PREFIX,
// reading its plan back, and the root check every command that changes the system makes first.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { SandboxPlan } from './plan';
import { SandboxStateError } from './runtime-errors';

export interface SandboxPaths {
  stateDir: string;
  planFile: string;
  ledgerFile: string;
  logDir: string;
  /** How `up` started the agents, so `agent start` restarts them the same way. */
  agentSettingsFile: string;
  /** Configuration, scrape targets and storage of the sandbox's Prometheus (`up --prometheus`). */
  prometheusDir: string;
}

export function sandboxPaths(prefix: string): SandboxPaths {
  const stateDir = path.join('/run/ferry', prefix);
  return {
    stateDir,
    planFile: path.join(stateDir, 'plan.json'),
    ledgerFile: path.join(stateDir, 'ledger.jsonl'),
    logDir: path.join(stateDir, 'logs'),
    agentSettingsFile: path.join(stateDir, 'agent.json'),
    prometheusDir: path.join(stateDir, 'prometheus'),
  };
}

export function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) {
    throw new SandboxStateError(`${what} needs root: it creates network namespaces, cgroups and BPF programs (run it with sudo)`);
  }
}

export function readPlan(prefix: string): SandboxPlan {
  const { planFile } = sandboxPaths(prefix);
  if (!fs.existsSync(planFile)) {
    throw new SandboxStateError(`no sandbox "${prefix}" is up (no ${planFile}); start one with: ferry sandbox up -f FILE`);
  }
  return JSON.parse(fs.readFileSync(planFile, 'utf8')) as SandboxPlan;
}
