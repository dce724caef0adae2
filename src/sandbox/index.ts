// src/sandbox: a mesh on one machine from Kubernetes-shaped YAML — manifests, plan and runtime.
export { loadManifests, parseManifests } from './manifest';
export { planSandbox, type SandboxPlan } from './plan';
export {
  agentReady,
  sandboxChangeObjects,
  sandboxDown,
  sandboxRotateCa,
  sandboxExec,
  sandboxKillAgent,
  sandboxKillController,
  sandboxKubeconfig,
  sandboxKubectlCommand,
  sandboxStartAgent,
  sandboxUpgradeAgent,
  sandboxStartController,
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
export { superviseSandbox } from './api-sandbox';
