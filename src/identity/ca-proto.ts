// The CA service's protocol (proto/ferry/ca/v1/ca.proto) loaded with @grpc/proto-loader, and the shapes of
// its messages as proto-loader hands them over (camelCase fields, enums as names, uint64 as numbers).
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { LOADER_OPTIONS as FERRY_LOADER_OPTIONS, protoDirectory } from '../proto';

export const CA_PROTO_FILE = 'ferry/ca/v1/ca.proto';
/** The fully qualified service name, as grpc-js registers it. */
export const CA_SERVICE_NAME = 'ferry.ca.v1.CertificateService';

/** src/proto's options, but 64-bit integers as numbers: CA generations stay far below 2^53. */
const LOADER_OPTIONS: protoLoader.Options = { ...FERRY_LOADER_OPTIONS, longs: Number };

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

/** The directory holding `proto/` (one lookup for every service: src/proto). */
export function protoRoot(): string {
  return protoDirectory();
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
