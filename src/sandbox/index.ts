// src/sandbox: a mesh on one machine from Kubernetes-shaped YAML — manifests, plan and runtime.
export { loadManifests, parseManifests } from './manifest';
export { planSandbox, type SandboxPlan } from './plan';
export {
  agentReady,
  sandboxChangePolicies,
  sandboxDown,
  sandboxRotateCa,
  sandboxExec,
  sandboxKillAgent,
  sandboxStartAgent,
  sandboxStatus,
  sandboxUp,
  type SandboxStatus,
} from './runtime';
export { readPlan, sandboxPaths } from './state-dir';
export { netnsHttpGet, type NetnsHttpResponse } from './netns-http';
export {
  sandboxQuery,
  stopPrometheus,
  type PrometheusQueryData,
  type PrometheusQueryResponse,
  type PrometheusSample,
  type PrometheusStatus,
} from './prometheus';
export { snapshotFromPlan } from './snapshot';
