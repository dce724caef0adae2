// Loads Ferry's .proto files (proto/ at the package root) at run time with @grpc/proto-loader, with one set of
// options for every service, so the generated TypeScript types (src/proto/generated) describe what it returns.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ProtoLoadError } from './errors';

/**
 * How messages look in JavaScript: camelCase fields, 64-bit integers and enums as strings, every field present
 * (proto3 defaults filled in; `optional` fields absent when unset), and each oneof's chosen field named by a
 * virtual field. scripts/proto-types.js passes the same to proto-loader-gen-types.
 */
export const LOADER_OPTIONS: protoLoader.Options = Object.freeze({
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});

/**
 * The package root: the nearest directory above this module holding Ferry's package.json, so the same code
 * finds proto/ from src/proto (ts-node, tests of sources) and from dist/src/proto (compiled).
 */
function findPackageRoot(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest)) {
      try {
        if ((JSON.parse(fs.readFileSync(manifest, 'utf8')) as { name?: unknown }).name === 'ferry') return dir;
      } catch {
        // Not ours (or unreadable): keep looking upwards.
      }
    }
    if (path.dirname(dir) === dir) throw new ProtoLoadError(`no package.json of ferry above ${start}: cannot find proto/`);
  }
}

let protoRoot: string | undefined;

/** The directory holding Ferry's .proto files (`<package root>/proto`). */
export function protoDirectory(): string {
  protoRoot ??= path.join(findPackageRoot(__dirname), 'proto');
  return protoRoot;
}

export interface LoadedProto {
  /** What proto-loader made of the file: service and message definitions by full name. */
  definition: protoLoader.PackageDefinition;
  /** The same, as grpc-js client constructors and service definitions. */
  grpcObject: grpc.GrpcObject;
}

const loaded = new Map<string, LoadedProto>();

/**
 * Load one of Ferry's .proto files, named relative to proto/ (`ferry/config/v1/config.proto`); imports resolve
 * against proto/ too. Parsed once per process; throws ProtoLoadError naming the file.
 */
export function loadFerryProto(file: string): LoadedProto {
  const cached = loaded.get(file);
  if (cached) return cached;
  const root = protoDirectory();
  const full = path.resolve(root, file);
  if (path.relative(root, full).startsWith('..') || !fs.existsSync(full)) {
    throw new ProtoLoadError(`${file}: no such file under ${root}`);
  }
  let definition: protoLoader.PackageDefinition;
  try {
    definition = protoLoader.loadSync(path.relative(root, full), { ...LOADER_OPTIONS, includeDirs: [root] });
  } catch (err) {
    throw new ProtoLoadError(`${file}: cannot be loaded: ${(err as Error).message}`, { cause: err });
  }
  const result = { definition, grpcObject: grpc.loadPackageDefinition(definition) };
  loaded.set(file, result);
  return result;
}
