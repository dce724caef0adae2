// The agent's one root logger (pino, JSON lines). Components log through child loggers carrying
// `component`; connections add `conn`. Levels change at run time (the admin API's /logging), for
// the whole agent or one component: pino children keep the level they were made with, so every
// child is tracked (weakly) and set again on a change.
import pino, { type Logger, type DestinationStream, type LevelWithSilent as Level } from 'pino';

export type { Logger };
export type LogLevel = Level;

export const LOG_LEVELS: readonly Level[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function isLogLevel(value: string): value is Level {
  return (LOG_LEVELS as readonly string[]).includes(value);
}

/** Root level and per-component overrides, applied to every logger made from the root. */
export class LogLevels {
  private rootLevel: Level;
  private readonly overrides = new Map<string, Level>();
  private readonly children = new Set<WeakRef<Logger>>();
  private readonly finalizer = new FinalizationRegistry<WeakRef<Logger>>((ref) => this.children.delete(ref));

  constructor(
    readonly root: Logger,
    level: Level,
  ) {
    this.rootLevel = level;
  }

  /** pino's onChild hook: remember the child and give it its component's level. */
  adopt(child: Logger): void {
    const ref = new WeakRef(child);
    this.children.add(ref);
    this.finalizer.register(child, ref);
    child.level = this.levelFor(child);
  }

  get level(): Level {
    return this.rootLevel;
  }

  components(): Record<string, Level> {
    return Object.fromEntries(this.overrides);
  }

  /** Without `component`: the root level (overrides stay). With it: that component's level. */
  set(level: Level, component?: string): void {
    if (component === undefined) this.rootLevel = level;
    else this.overrides.set(component, level);
    this.apply();
  }

  /** Drop a component's override: it follows the root level again. */
  reset(component: string): void {
    this.overrides.delete(component);
    this.apply();
  }

  private apply(): void {
    this.root.level = this.rootLevel;
    for (const ref of this.children) {
      const child = ref.deref();
      if (child) child.level = this.levelFor(child);
    }
  }

  private levelFor(logger: Logger): Level {
    const component = (logger.bindings() as { component?: unknown }).component;
    return (typeof component === 'string' ? this.overrides.get(component) : undefined) ?? this.rootLevel;
  }
}

export interface RootLogger {
  log: Logger;
  levels: LogLevels;
}

export function createLogging(level: Level, destination?: DestinationStream): RootLogger {
  let levels: LogLevels | undefined;
  const log = pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Inherited by every descendant; runs before `levels` exists only for none (no child is made first).
      onChild: (child) => levels?.adopt(child),
    },
    destination,
  );
  levels = new LogLevels(log, level);
  return { log, levels };
}

export function createRootLogger(level: string, destination?: DestinationStream): Logger {
  // pino refuses an unknown level with its own error.
  return createLogging(level as Level, destination).log;
}
