// src/app: wiring — what is built, in which order. No data-path logic lives here.
export { configSourceFor, startAgent, type Agent } from './agent';
export {
  CONTROLLER_NAMESPACE,
  CONTROLLER_SERVER_NAME,
  CONTROLLER_SERVICE_ACCOUNT,
  startController,
  type ControllerSettings,
  type RunningController,
} from './controller';
export { checkNode, formatNodeCheck, realNodeCheckDeps, type CheckResult, type NodeCheckReport } from './check';
