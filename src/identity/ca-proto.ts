// The CA service's protocol (proto/ferry/ca/v1/ca.proto) loaded with @grpc/proto-loader, and the shapes of
// its messages as proto-loader hands them over (camelCase fields, enums as names, uint64 as numbers).
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { IdentityError } from './errors';

export const CA_PROTO_FILE = 'ferry/ca/v1/ca.proto';
/** The fully qualified service name, as grpc-js registers it. */
export const CA_SERVICE_NAME = 'ferry.ca.v1.CertificateService';

/**
 * keepCase false: fields arrive camelCase. longs Number: generations stay far below 2^53. defaults:
 * absent proto3 fields read as their zero value, so handlers never meet undefined.
 */
const LOADER_OPTIONS: protoLoader.Options = { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true };

export type CaRotationPhaseName =
  | 'ROTATION_PHASE_UNSPECIFIED'
  | 'ROTATION_PHASE_STEADY'
  | 'ROTATION_PHASE_ROTATING'
  | 'ROTATION_PHASE_SWITCHED';

export interface SignRequestMessage {
  csrPem: string;
  namespace: string;
  serviceAccount: string;
  ttlSeconds: number;
  podUid: string;
  podName: string;
}

export interface SignResponseMessage {
  chainPem: string[];
  trustBundlePem: string[];
}

export type WatchTrustBundleRequestMessage = Record<string, never>;

export interface TrustBundleMessage {
  rootsPem: string[];
  phase: CaRotationPhaseName;
  generation: number;
  issuer: string;
  trustDomain: string;
}

/** The directory holding `proto/`: the package root, found from this file (src/identity or dist/src/identity). */
export function protoRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'proto', CA_PROTO_FILE))) {
      return path.join(dir, 'proto');
    }
    const parent = path.dirname(dir);
    if (parent === dir) {
      throw new IdentityError('FERRY_ERR_IDENTITY_CA_SERVICE', `${CA_PROTO_FILE}: not found in a proto/ folder above ${__dirname}`);
    }
    dir = parent;
  }
}

let loaded: grpc.ServiceClientConstructor | undefined;

/** The CertificateService client constructor; its `service` is the definition servers register. Loaded once. */
export function certificateServiceClient(): grpc.ServiceClientConstructor {
  if (loaded === undefined) {
    const root = protoRoot();
    const definition = protoLoader.loadSync(path.join(root, CA_PROTO_FILE), { ...LOADER_OPTIONS, includeDirs: [root] });
    const pkg = grpc.loadPackageDefinition(definition) as unknown as {
      ferry: { ca: { v1: { CertificateService: grpc.ServiceClientConstructor } } };
    };
    loaded = pkg.ferry.ca.v1.CertificateService;
  }
  return loaded;
}

export function certificateServiceDefinition(): grpc.ServiceDefinition {
  return certificateServiceClient().service;
}
