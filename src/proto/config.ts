// The config stream's protocol (proto/ferry/config/v1/config.proto) in TypeScript: the service definition, message
// codecs, and the mapping between the model's resources (src/state) and their messages, both ways.
import type * as grpc from '@grpc/grpc-js';
import type { MethodDefinition } from '@grpc/proto-loader';
import { formatFieldPath } from '../errors';
import type { AuthorizationPolicy, PeerAuthentication } from '../policy';
import type { ResourceKind as ModelKind, ResourceTypes, Service, Workload } from '../state';
import type { ProtoGrpcType } from './generated/config';
import type { AgentMessage, AgentMessage__Output } from './generated/ferry/config/v1/AgentMessage';
import type { ConfigServiceClient } from './generated/ferry/config/v1/ConfigService';
import type { ControllerMessage, ControllerMessage__Output } from './generated/ferry/config/v1/ControllerMessage';
import type { Resource, Resource__Output } from './generated/ferry/config/v1/Resource';
import type { ResourceKind__Output } from './generated/ferry/config/v1/ResourceKind';
import type { Service__Output } from './generated/ferry/config/v1/Service';
import type { Workload as WorkloadMessage, Workload__Output } from './generated/ferry/config/v1/Workload';
import { loadFerryProto } from './loader';

export type { Ack, Ack__Output } from './generated/ferry/config/v1/Ack';
export type { AgentMessage, AgentMessage__Output } from './generated/ferry/config/v1/AgentMessage';
export type { ConfigServiceClient } from './generated/ferry/config/v1/ConfigService';
export type { ControllerMessage, ControllerMessage__Output } from './generated/ferry/config/v1/ControllerMessage';
export type { Hello, Hello__Output } from './generated/ferry/config/v1/Hello';
export type { Resource, Resource__Output } from './generated/ferry/config/v1/Resource';
export type { ResourceError, ResourceError__Output } from './generated/ferry/config/v1/ResourceError';
export type { ResourceKind__Output as WireResourceKind } from './generated/ferry/config/v1/ResourceKind';
export type { ResourceName, ResourceName__Output } from './generated/ferry/config/v1/ResourceName';
export type { ResourceVersion, ResourceVersion__Output } from './generated/ferry/config/v1/ResourceVersion';

export const CONFIG_PROTO_FILE = 'ferry/config/v1/config.proto';

type StreamMethod = MethodDefinition<AgentMessage, ControllerMessage, AgentMessage__Output, ControllerMessage__Output>;

export interface ConfigProtocol {
  /** ConfigService as grpc-js serves and dials it. */
  service: grpc.ServiceDefinition;
  /** The typed client constructor. */
  Client: new (
    address: string,
    credentials: grpc.ChannelCredentials,
    options?: grpc.ChannelOptions,
  ) => ConfigServiceClient;
  /** The full method path, for raw clients. */
  streamPath: string;
  encodeControllerMessage(message: ControllerMessage): Buffer;
  decodeControllerMessage(bytes: Buffer): ControllerMessage__Output;
  encodeAgentMessage(message: AgentMessage): Buffer;
  decodeAgentMessage(bytes: Buffer): AgentMessage__Output;
}

let protocol: ConfigProtocol | undefined;

/** The config protocol, loaded once per process. */
export function configProtocol(): ConfigProtocol {
  if (protocol) return protocol;
  const { grpcObject } = loadFerryProto(CONFIG_PROTO_FILE);
  const { ConfigService } = (grpcObject as unknown as ProtoGrpcType).ferry.config.v1;
  const stream = ConfigService.service.Stream as unknown as StreamMethod;
  protocol = {
    service: ConfigService.service as unknown as grpc.ServiceDefinition,
    Client: ConfigService as unknown as ConfigProtocol['Client'],
    streamPath: stream.path,
    encodeControllerMessage: (m) => stream.responseSerialize(m),
    decodeControllerMessage: (b) => stream.responseDeserialize(b),
    encodeAgentMessage: (m) => stream.requestSerialize(m),
    decodeAgentMessage: (b) => stream.requestDeserialize(b),
  };
  return protocol;
}

/** The wire enum of each model kind. */
export const WIRE_KINDS = {
  workload: 'WORKLOAD',
  service: 'SERVICE',
  authorizationPolicy: 'AUTHORIZATION_POLICY',
  peerAuthentication: 'PEER_AUTHENTICATION',
} as const satisfies { [K in ModelKind]: ResourceKind__Output };

const MODEL_KINDS = new Map<unknown, ModelKind>(Object.entries(WIRE_KINDS).map(([model, wire]) => [wire, model as ModelKind]));

/** The model kind of a wire enum value; undefined for UNSPECIFIED and values this agent does not know. */
export function modelKind(wire: unknown): ModelKind | undefined {
  return MODEL_KINDS.get(wire);
}

/** JSON with object keys sorted at every level: the same policy always gives the same bytes (and version). */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.keys(v as object)
            .sort()
            .map((k) => [k, (v as Record<string, unknown>)[k]]),
        )
      : v,
  );
}

function sortedLabels(labels: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.keys(labels)
      .sort()
      .map((k) => [k, labels[k]]),
  );
}

function workloadMessage(w: Workload): WorkloadMessage {
  return {
    uid: w.uid,
    namespace: w.namespace,
    name: w.name,
    node: w.node,
    serviceAccount: w.serviceAccount,
    ips: w.ips,
    // Sorted, so that equal workloads encode to equal bytes whatever order their labels were listed in.
    labels: sortedLabels(w.labels),
    meshEnabled: w.meshEnabled,
    ...(w.netnsPath !== '' ? { netnsPath: w.netnsPath } : {}),
    excludeOutboundPorts: w.excludeOutboundPorts,
    excludeOutboundCidrs: w.excludeOutboundCidrs,
  };
}

/** The message of one model resource (version left to the caller). */
export function resourceMessage<K extends ModelKind>(kind: K, name: string, value: ResourceTypes[K], version = ''): Resource {
  const head = { kind: WIRE_KINDS[kind], name, version };
  switch (kind) {
    case 'workload':
      return { ...head, workload: workloadMessage(value as Workload) };
    case 'service': {
      const s = value as Service;
      return {
        ...head,
        service: {
          namespace: s.namespace,
          name: s.name,
          hostname: s.hostname,
          vips: s.vips,
          ports: s.ports.map((p) => ({
            ...(p.name !== undefined ? { name: p.name } : {}),
            port: p.port,
            endpoints: p.endpoints.map((e) => ({
              ip: e.ip,
              port: e.port,
              ...(e.workloadUid !== undefined ? { workloadUid: e.workloadUid } : {}),
            })),
          })),
        },
      };
    }
    case 'authorizationPolicy':
      return { ...head, authorizationPolicyJson: Buffer.from(canonicalJson(value as AuthorizationPolicy)) };
    default:
      return { ...head, peerAuthenticationJson: Buffer.from(canonicalJson(value as PeerAuthentication)) };
  }
}

/** A resource message read back as the model's value, or the first reason it cannot be (with its field). */
export type DecodedResource =
  | { ok: true; kind: ModelKind; name: string; version: string; value: ResourceTypes[ModelKind] }
  | { ok: false; kind: ModelKind | undefined; name: string; version: string; field: string; message: string };

function workloadValue(m: Workload__Output): Workload {
  return {
    uid: m.uid,
    namespace: m.namespace,
    name: m.name,
    node: m.node,
    serviceAccount: m.serviceAccount,
    ips: m.ips,
    labels: { ...m.labels },
    meshEnabled: m.meshEnabled,
    // The controller does not know it; the node fills it in.
    netnsPath: m.netnsPath ?? '',
    excludeOutboundPorts: m.excludeOutboundPorts,
    excludeOutboundCidrs: m.excludeOutboundCidrs,
  };
}

function serviceValue(m: Service__Output): Service {
  return {
    namespace: m.namespace,
    name: m.name,
    hostname: m.hostname,
    vips: m.vips,
    ports: m.ports.map((p) => ({
      ...(p.name !== undefined ? { name: p.name } : {}),
      port: p.port,
      endpoints: p.endpoints.map((e) => ({
        ip: e.ip,
        port: e.port,
        ...(e.workloadUid !== undefined ? { workloadUid: e.workloadUid } : {}),
      })),
    })),
  };
}

const BODY_OF: { [K in ModelKind]: NonNullable<Resource__Output['body']> } = {
  workload: 'workload',
  service: 'service',
  authorizationPolicy: 'authorizationPolicyJson',
  peerAuthentication: 'peerAuthenticationJson',
};

/** Decode one resource message into the model's shape; not yet validated (state.validateResource does that). */
export function decodeResource(m: Resource__Output): DecodedResource {
  const kind = modelKind(m.kind);
  const base = { name: m.name, version: m.version };
  const fail = (field: string, message: string): DecodedResource => ({ ok: false, kind, ...base, field, message });
  if (kind === undefined) return fail('kind', `${JSON.stringify(m.kind)} is not a resource kind this agent knows`);
  if (m.name === '') return fail('name', 'is empty');
  if (m.body !== BODY_OF[kind]) return fail('body', `is ${m.body ?? 'absent'}; expected ${BODY_OF[kind]} for a ${WIRE_KINDS[kind]}`);
  switch (kind) {
    case 'workload':
      return { ok: true, kind, ...base, value: workloadValue(m.workload as Workload__Output) };
    case 'service':
      return { ok: true, kind, ...base, value: serviceValue(m.service as Service__Output) };
    default: {
      const bytes = (kind === 'authorizationPolicy' ? m.authorizationPolicyJson : m.peerAuthenticationJson) ?? Buffer.alloc(0);
      try {
        return { ok: true, kind, ...base, value: JSON.parse(bytes.toString('utf8')) as ResourceTypes[ModelKind] };
      } catch (err) {
        return fail(formatFieldPath([BODY_OF[kind]]), `is not valid JSON: ${(err as Error).message}`);
      }
    }
  }
}
