// Where the agent's model comes from: a ConfigSource pushes typed deltas into a ConfigSink (the agent's
// wiring over ClusterState). The source here is in memory (tests); the controller's gRPC stream is
// src/config-client.
import type { StateDelta } from './delta';

export interface ConfigUpdate {
  /** The source's name for this state (the controller's system version): for logs. */
  version: string;
  /** When the source numbers its states: the state's revision after this delta. */
  revision?: number;
  /**
   * The state now holds everything the source had when it (re)started, so enrolment may act on it (prune
   * pods it does not name, ready the agent). Once true it stays true: a later resync only brings news.
   */
  synced: boolean;
}

export interface ConfigSink {
  /**
   * One step of configuration, applied at once and in order. Called for every non-empty delta, and once with
   * an empty one when the source becomes synced without changes. Must not throw for valid resources; a
   * source catches what it throws and reports it (the gRPC source NACKs the delta's policies).
   */
  apply(delta: StateDelta, update: ConfigUpdate): void;
}

export interface ConfigSource {
  /** What this source reads, for logs ("controller ferry:15012"). */
  readonly description: string;
  /** Has delivered a synced update (see ConfigUpdate.synced). */
  readonly synced: boolean;
  /** Begin delivering to `sink`; called once. */
  start(sink: ConfigSink): void;
  /** Stop delivering; no apply() after the promise resolves. The state keeps what it has. */
  stop(): Promise<void>;
}

/** A source whose deltas a test pushes by hand; each push is delivered synchronously. */
export class MemoryConfigSource implements ConfigSource {
  readonly description = 'memory';
  private sink: ConfigSink | undefined;
  private isSynced = false;
  private count = 0;

  get synced(): boolean {
    return this.isSynced;
  }

  start(sink: ConfigSink): void {
    this.sink = sink;
  }

  async stop(): Promise<void> {
    this.sink = undefined;
  }

  /** Deliver `delta` (synced unless `synced: false`). Throws when not started, or what the sink throws. */
  push(delta: StateDelta, options: { synced?: boolean; revision?: number } = {}): void {
    if (!this.sink) throw new Error('MemoryConfigSource.push before start (or after stop)');
    this.isSynced ||= options.synced ?? true;
    this.count += 1;
    this.sink.apply(delta, { version: String(options.revision ?? this.count), revision: options.revision, synced: this.isSynced });
  }
}
