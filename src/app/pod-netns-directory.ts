// Which network namespace is whose, for workloads that arrive without one (the controller's, since the API knows
// no network namespaces): the node's kubelet writes `DIR/<pod uid>.json` = {uid, namespace, name, netnsPath, …}
// atomically into a root-only directory. A ConfigSource wrapper fills an empty netnsPath of this node's workloads
// from the record that names the same pod, before the delta reaches the state, and follows the records as they
// appear, change and vanish (checked on every delta and on a timer), delivering the changed workloads as a delta
// of their own so the reconciler enrols a pod soon after its record appears.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ConfigSink, ConfigSource, ConfigUpdate, StateDelta, Workload } from '../state';
import type { Logger } from '../telemetry';

export interface PodNetnsDirectoryOptions {
  /** The kubelet's pod records directory. */
  dir: string;
  /** This agent's node: only its workloads are filled. */
  node: string;
  log: Logger;
  /** How often the records of waiting workloads are looked at again. Default 500 ms. */
  intervalMs?: number;
}

/** Pod UIDs as a file name: Kubernetes UIDs are UUIDs; anything with a '/' or '.' never becomes a path. */
const UID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9-]{0,127}$/;
/** The two forms a netnsPath takes (src/state model.ts): a named namespace or a process's. */
const NETNS_PATTERN = /^(?:\/run\/netns\/[A-Za-z0-9._-]{1,255}|\/proc\/[1-9][0-9]{0,9}\/ns\/net)$/;
const MAX_RECORD_BYTES = 64 * 1024;

/** One record file as last read: `key` changes with every write (the kubelet renames a new file in). */
interface RecordRead {
  key: string;
  /** The trusted path, or '' (absent or refused). */
  netnsPath: string;
}

/**
 * A refused record is logged once per version of its file (naming the file and the field) and counts as
 * absent; so does a record that vanishes: the workload's netnsPath goes back to '' (a pod's name, and so its
 * namespace's, may be reused by the next pod of that name, so a stale path is never kept). Workloads that
 * carry a netnsPath of their own, and other nodes' workloads, pass untouched. stop(): no apply() after it.
 */
export class PodNetnsDirectory implements ConfigSource {
  readonly description: string;
  readonly #inner: ConfigSource;
  readonly #dir: string;
  readonly #node: string;
  readonly #log: Logger;
  readonly #intervalMs: number;
  /** This node's workloads that arrived without a netnsPath, as the source sent them. */
  readonly #waiting = new Map<string, Workload>();
  /** The netnsPath each waiting workload was last delivered with ('' for none). */
  readonly #delivered = new Map<string, string>();
  readonly #reads = new Map<string, RecordRead>();
  #sink: ConfigSink | undefined;
  #lastUpdate: ConfigUpdate | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(inner: ConfigSource, options: PodNetnsDirectoryOptions) {
    this.#inner = inner;
    this.#dir = options.dir;
    this.#node = options.node;
    this.#log = options.log.child({ component: 'pod-records' });
    this.#intervalMs = options.intervalMs ?? 500;
    this.description = `${inner.description} (network namespaces from ${options.dir})`;
  }

  get synced(): boolean {
    return this.#inner.synced;
  }

  start(sink: ConfigSink): void {
    this.#sink = sink;
    this.#inner.start({ apply: (delta, update) => this.#fromSource(delta, update) });
    this.#timer = setInterval(() => this.recheck(), this.#intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#inner.stop();
    this.#sink = undefined;
  }

  /** uid → the netnsPath delivered, for the workloads waiting on a record ('' while none is trusted). */
  waiting(): Map<string, string> {
    return new Map(this.#delivered);
  }

  /**
   * Read the records of every waiting workload again; deliver those whose path changed as one delta (with
   * the last update's version and `synced`). The timer calls it; so does every delta from the source.
   */
  recheck(): void {
    const sink = this.#sink;
    const update = this.#lastUpdate;
    if (sink === undefined || update === undefined) return;
    const changed: Workload[] = [];
    for (const [uid, workload] of this.#waiting) {
      const netnsPath = this.#lookup(workload);
      if (netnsPath === this.#delivered.get(uid)) continue;
      this.#delivered.set(uid, netnsPath);
      changed.push({ ...workload, netnsPath });
      this.#log.info({ pod: uid, netnsPath: netnsPath || undefined }, netnsPath ? 'pod record found' : 'pod record gone');
    }
    if (changed.length === 0) return;
    try {
      sink.apply({ workloads: { upsert: changed } }, { ...update });
    } catch (err) {
      this.#log.error({ err }, 'the state refused workloads with their network namespaces');
    }
  }

  #fromSource(delta: StateDelta, update: ConfigUpdate): void {
    this.#lastUpdate = update;
    let forwarded = delta;
    const workloads = delta.workloads;
    if (workloads !== undefined) {
      for (const uid of workloads.remove ?? []) this.#forget(uid);
      const upsert = workloads.upsert?.map((w) => this.#fill(w));
      forwarded = { ...delta, workloads: { ...workloads, ...(upsert !== undefined ? { upsert } : {}) } };
    }
    this.#sink?.apply(forwarded, update);
    this.recheck();
  }

  #fill(workload: Workload): Workload {
    if (workload.node !== this.#node || workload.netnsPath !== '') {
      this.#forget(workload.uid);
      return workload;
    }
    this.#waiting.set(workload.uid, workload);
    const netnsPath = this.#lookup(workload);
    this.#delivered.set(workload.uid, netnsPath);
    return netnsPath === '' ? workload : { ...workload, netnsPath };
  }

  #forget(uid: string): void {
    this.#waiting.delete(uid);
    this.#delivered.delete(uid);
    this.#reads.delete(uid);
  }

  /** The trusted netnsPath for `workload` now, or ''. */
  #lookup(workload: Workload): string {
    const { uid } = workload;
    const file = path.join(this.#dir, `${uid}.json`);
    if (!UID_PATTERN.test(uid)) {
      if (!this.#reads.has(uid)) this.#refuse(file, 'uid', `uid ${JSON.stringify(uid)} is not a pod UID; no record looked up`);
      this.#reads.set(uid, { key: 'bad-uid', netnsPath: '' });
      return '';
    }
    let stat: fs.Stats;
    try {
      stat = fs.lstatSync(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        const key = `error:${(err as Error).message}`;
        if (this.#reads.get(uid)?.key !== key) this.#refuse(file, 'file', (err as Error).message);
        this.#reads.set(uid, { key, netnsPath: '' });
      } else {
        this.#reads.set(uid, { key: 'absent', netnsPath: '' });
      }
      return '';
    }
    // The workload's names are part of the key: the record is checked against them.
    const key = `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeMs}:${stat.ctimeMs}:${workload.namespace}/${workload.name}`;
    const previous = this.#reads.get(uid);
    if (previous?.key === key) return previous.netnsPath;
    const read = this.#read(file, stat, workload);
    const netnsPath = typeof read === 'string' ? read : '';
    if (typeof read !== 'string') this.#refuse(file, read.field, read.problem);
    this.#reads.set(uid, { key, netnsPath });
    return netnsPath;
  }

  /** The record's netnsPath, or why the record is refused. */
  #read(file: string, stat: fs.Stats, workload: Workload): string | { field: string; problem: string } {
    if (!stat.isFile()) return { field: 'file', problem: 'not a regular file (a symbolic link or other kind is never followed)' };
    const euid = process.geteuid?.() ?? 0;
    if (stat.uid !== 0 && stat.uid !== euid) return { field: 'file', problem: `owned by uid ${stat.uid}, neither root nor this agent` };
    if ((stat.mode & 0o022) !== 0)
      return { field: 'file', problem: `writable by group or others (mode ${(stat.mode & 0o777).toString(8)})` };
    if (stat.size > MAX_RECORD_BYTES) return { field: 'file', problem: `${stat.size} bytes, more than a pod record's ${MAX_RECORD_BYTES}` };
    let record: unknown;
    try {
      record = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (err) {
      return { field: 'file', problem: `not JSON: ${(err as Error).message}` };
    }
    if (typeof record !== 'object' || record === null || Array.isArray(record)) return { field: 'file', problem: 'not a JSON object' };
    const fields = record as Record<string, unknown>;
    for (const field of ['uid', 'namespace', 'name'] as const) {
      if (fields[field] !== workload[field]) {
        return {
          field,
          problem: `${JSON.stringify(fields[field])} is not the workload's ${JSON.stringify(workload[field])}`,
        };
      }
    }
    const netnsPath = fields.netnsPath;
    if (typeof netnsPath !== 'string' || !NETNS_PATTERN.test(netnsPath)) {
      return { field: 'netnsPath', problem: `${JSON.stringify(netnsPath)} is neither /run/netns/NAME nor /proc/PID/ns/net` };
    }
    return netnsPath;
  }

  #refuse(file: string, field: string, problem: string): void {
    this.#log.warn({ file, field }, `pod record refused (${field}: ${problem}); the pod stays without a network namespace`);
  }
}
