// Small helpers shared by the unit tests: bounded waits and the test-context shape for cleanup.

/** The part of node:test's TestContext the helpers use to register cleanup. */
export type After = { after: (fn: () => void | Promise<void>) => void };

/** Rejects after `ms` so a broken component fails the test instead of hanging it. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
