// src/app: wiring — what is built, in which order. No data-path logic lives here.
export { configSourceFor, startAgent, type Agent } from './agent';
