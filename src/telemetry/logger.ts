// The agent's one root logger (pino, JSON lines). Components log through child loggers carrying
// `component`; connections add `conn`.
import pino, { type Logger, type DestinationStream } from 'pino';

export type { Logger };

export function createRootLogger(level: string, destination?: DestinationStream): Logger {
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}
