// Where the agent's model comes from: a ConfigSource pushes typed deltas into a ConfigSink (the agent's
// wiring over ClusterState). Sources here: in memory (tests) and the sandbox's snapshot file; the
// controller's gRPC stream is src/config-client.
import type { Logger } from '../telemetry';
import { isEmptyDelta, snapshotDelta, type StateDelta } from './delta';
import type { ClusterSnapshot } from './model';
import { watchSnapshot } from './snapshot-file';

export interface ConfigUpdate {
  /** The source's name for this state (snapshot revision, controller system version): for logs. */
  version: string;
  /** When the source numbers its states (the snapshot file): the state's revision after this delta. */
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
  /** What this source reads, for logs ("snapshot /run/ferry/snapshot.json", "controller ferry:15012"). */
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

export interface SnapshotFileSourceOptions {
  /** How often the file is checked (watchSnapshot). */
  intervalMs?: number;
  log: Logger;
}

/**
 * The sandbox's snapshot file (watchSnapshot): each new revision becomes the delta from the previous one. A
 * bad document is logged and the previous state stays; a sink that throws (policies that cannot be compiled
 * together) is logged the same way, and the next revision is diffed against what was last applied.
 */
export class SnapshotFileSource implements ConfigSource {
  readonly description: string;
  private unwatch: (() => void) | undefined;
  private applied: ClusterSnapshot | undefined;
  private isSynced = false;

  constructor(
    private readonly file: string,
    private readonly options: SnapshotFileSourceOptions,
  ) {
    this.description = `snapshot ${file}`;
  }

  get synced(): boolean {
    return this.isSynced;
  }

  start(sink: ConfigSink): void {
    const { log } = this.options;
    this.unwatch = watchSnapshot(
      this.file,
      (snapshot) => {
        const delta = snapshotDelta(
          this.applied && {
            workloads: this.applied.workloads,
            services: this.applied.services,
            authorizationPolicies: this.applied.authorizationPolicies ?? [],
            peerAuthentications: this.applied.peerAuthentications ?? [],
          },
          snapshot,
        );
        if (isEmptyDelta(delta) && this.isSynced && this.applied?.revision === snapshot.revision) return;
        try {
          sink.apply(delta, { version: String(snapshot.revision), revision: snapshot.revision, synced: true });
        } catch (err) {
          log.error({ err, revision: snapshot.revision }, 'snapshot could not be applied; keeping the previous state');
          return;
        }
        this.applied = snapshot;
        this.isSynced = true;
      },
      (err) => log.error({ err }, 'snapshot rejected; keeping the previous one'),
      this.options.intervalMs,
    );
  }

  async stop(): Promise<void> {
    this.unwatch?.();
    this.unwatch = undefined;
  }
}
