// The argument checks every src/native wrapper runs before crossing into C++: each failure is a
// NativeArgumentError naming the call, the argument's path and what was expected.
import * as net from 'node:net';

import { NativeArgumentError } from './errors';

export const MAX_UINT32 = 0xffff_ffff;
export const MAX_INT32 = 0x7fff_ffff;

export function requirePath(call: string, argument: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.includes('\0')) {
    throw new NativeArgumentError(call, argument, 'a non-empty path string without NUL bytes', value);
  }
  return value;
}

export function requireName(call: string, argument: string, value: unknown, known: readonly string[], owner: string): string {
  if (typeof value !== 'string' || !known.includes(value)) {
    throw new NativeArgumentError(call, argument, `one of the ${owner} [${known.join(', ')}]`, value);
  }
  return value;
}

export function requireInteger(call: string, argument: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new NativeArgumentError(call, argument, `an integer in ${min}..${max}`, value);
  }
  return value;
}

export function requirePort(call: string, argument: string, value: unknown): number {
  return requireInteger(call, argument, value, 1, 65535);
}

export function requireFd(call: string, argument: string, value: unknown): number {
  return requireInteger(call, argument, value, 0, MAX_INT32);
}

export function requireBoolean(call: string, argument: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new NativeArgumentError(call, argument, 'a boolean', value);
  return value;
}

export function requireBuffer(call: string, argument: string, value: unknown, size: number, map: string): Buffer {
  if (!Buffer.isBuffer(value) || value.length !== size) {
    throw new NativeArgumentError(call, argument, `a Buffer of exactly ${size} bytes (${argument}Size of map ${map})`, value);
  }
  return value;
}

export function requireObject(call: string, argument: string, value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null) throw new NativeArgumentError(call, argument, 'an object', value);
  return value as Record<string, unknown>;
}

/** family given or inferred from host; host must be an address of that family (no DNS here). */
export function requireAddress(call: string, options: Record<string, unknown>): { family: 4 | 6; host: string } {
  const host = options.host;
  const detected = typeof host === 'string' ? net.isIP(host) : 0;
  if (options.family !== undefined && options.family !== 4 && options.family !== 6) {
    throw new NativeArgumentError(call, 'options.family', '4 or 6', options.family);
  }
  const family = options.family ?? detected;
  // A zone index (fe80::1%eth0) names an interface of the caller's namespace, not the target's.
  if (typeof host !== 'string' || detected === 0 || detected !== family || host.includes('%')) {
    const expected =
      family === 4 || family === 6
        ? `an IPv${family} address string without a zone index`
        : 'an IPv4 or IPv6 address string without a zone index';
    throw new NativeArgumentError(call, 'options.host', expected, host);
  }
  return { family: family as 4 | 6, host };
}

/** An address literal of the given family (no DNS, no zone index), e.g. for a bind address. */
export function requireAddressOf(call: string, argument: string, value: unknown, family: 4 | 6): string {
  if (typeof value !== 'string' || net.isIP(value) !== family || value.includes('%')) {
    throw new NativeArgumentError(call, argument, `an IPv${family} address string without a zone index`, value);
  }
  return value;
}
