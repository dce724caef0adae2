// src/config-client: the agent's ConfigSource over the controller's gRPC config stream.
export { GrpcConfigSource, type GrpcConfigSourceOptions, type GrpcConfigSourceStats } from './grpc-config-source';
export { CONFIG_CLIENT_ERROR_CODES, ConfigClientError } from './errors';
