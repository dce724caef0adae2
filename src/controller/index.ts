// src/controller: `ferry controller` — the model built from the cluster, the config stream to agents, the CA.
export { ModelBuilder, type ModelKind, type ModelSink, type ObjectReporter } from './model-builder';
export { CONTROLLER_COMPONENT, EventReporter, INVALID_EVENT_REASON, WARNING_EVENT_REASON, describeProblems } from './event-reporter';
