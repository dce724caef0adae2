// At most one log line per key per interval, with the number of lines left out: what a hostile pod
// can trigger at will (refused connections, denials) must not be able to fill the log or the disk.
export interface LimitedLine<T> {
  record: T;
  /** Lines for the same key left out since the previous line for it. */
  suppressed: number;
}

/**
 * The first record of a key is written at once and opens a window of `intervalMs`; records of that
 * key during the window are counted, and when it closes the latest of them is written with the
 * count of the others (and opens the next window). So a key writes at most one line per interval,
 * every line is a real record, and nothing is lost without being counted. One timer per open
 * window, unref'd; `close()` flushes what is pending.
 */
export class LogLimiter<T> {
  private readonly windows = new Map<string, { pending?: T; count: number; timer: NodeJS.Timeout }>();
  private suppressedTotal = 0;

  constructor(
    private readonly intervalMs: number,
    private readonly write: (key: string, line: LimitedLine<T>) => void,
  ) {}

  record(key: string, record: T): void {
    const window = this.windows.get(key);
    if (window) {
      window.pending = record;
      window.count += 1;
      return;
    }
    this.write(key, { record, suppressed: 0 });
    this.open(key);
  }

  /** Records left out so far (each line's `suppressed` minus the record it carries). */
  get suppressed(): number {
    return this.suppressedTotal;
  }

  private open(key: string): void {
    const timer = setTimeout(() => this.flush(key), this.intervalMs);
    timer.unref();
    this.windows.set(key, { count: 0, timer });
  }

  private flush(key: string): void {
    const window = this.windows.get(key);
    this.windows.delete(key);
    if (!window || window.count === 0 || window.pending === undefined) return;
    this.suppressedTotal += window.count - 1;
    this.write(key, { record: window.pending, suppressed: window.count - 1 });
    this.open(key);
  }

  /** Write what is pending now and stop every timer. */
  close(): void {
    for (const [key, window] of [...this.windows]) {
      clearTimeout(window.timer);
      this.windows.delete(key);
      if (window.count > 0 && window.pending !== undefined) {
        this.suppressedTotal += window.count - 1;
        this.write(key, { record: window.pending, suppressed: window.count - 1 });
      }
    }
  }
}
