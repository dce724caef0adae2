// src/proto: Ferry's protobuf services, loaded at run time from proto/ (loadFerryProto, for every service), the
// generated TypeScript types of their messages (generated/, `npm run proto:types`), and the config stream's codec.
export { LOADER_OPTIONS, loadFerryProto, protoDirectory, type LoadedProto } from './loader';
export { PROTO_ERROR_CODES, ProtoLoadError } from './errors';
export {
  CONFIG_PROTO_FILE,
  WIRE_KINDS,
  canonicalJson,
  configProtocol,
  decodeResource,
  modelKind,
  resourceMessage,
  type Ack,
  type Ack__Output,
  type AgentMessage,
  type AgentMessage__Output,
  type ConfigProtocol,
  type ConfigServiceClient,
  type ControllerMessage,
  type ControllerMessage__Output,
  type DecodedResource,
  type Hello,
  type Hello__Output,
  type Resource,
  type Resource__Output,
  type ResourceError,
  type ResourceError__Output,
  type ResourceName,
  type ResourceName__Output,
  type ResourceVersion,
  type ResourceVersion__Output,
  type WireResourceKind,
} from './config';
