// src/telemetry: logging (and, later, metrics and trace context).
export { createRootLogger, type Logger } from './logger';
export { channels } from './channels';
