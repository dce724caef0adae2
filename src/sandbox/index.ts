// src/sandbox: a mesh on one machine from Kubernetes-shaped YAML — manifests, plan and runtime.
export { loadManifests, parseManifests } from './manifest';
export { planSandbox, type SandboxPlan } from './plan';
export {
  agentReady, readPlan, sandboxChangePolicies, sandboxDown, sandboxRotateCa, sandboxExec, sandboxKillAgent, sandboxPaths, sandboxStartAgent, sandboxStatus,
  sandboxUp, type SandboxStatus,
} from './runtime';
export { snapshotFromPlan } from './snapshot';
