// Original file: proto/ferry/ca/v1/ca.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { SignRequest as _ferry_ca_v1_SignRequest, SignRequest__Output as _ferry_ca_v1_SignRequest__Output } from '../../../ferry/ca/v1/SignRequest';
import type { SignResponse as _ferry_ca_v1_SignResponse, SignResponse__Output as _ferry_ca_v1_SignResponse__Output } from '../../../ferry/ca/v1/SignResponse';
import type { TrustBundle as _ferry_ca_v1_TrustBundle, TrustBundle__Output as _ferry_ca_v1_TrustBundle__Output } from '../../../ferry/ca/v1/TrustBundle';
import type { WatchTrustBundleRequest as _ferry_ca_v1_WatchTrustBundleRequest, WatchTrustBundleRequest__Output as _ferry_ca_v1_WatchTrustBundleRequest__Output } from '../../../ferry/ca/v1/WatchTrustBundleRequest';

export interface CertificateServiceClient extends grpc.Client {
  /**
   * Sign a workload CSR. Allowed only for a service account that has a pod scheduled on the
   * calling agent's node and not terminated; PERMISSION_DENIED otherwise, naming the identity and
   * the node. INVALID_ARGUMENT for a malformed or oversized CSR, RESOURCE_EXHAUSTED past the
   * per-agent rate, UNAVAILABLE while the controller has not loaded the CA or the pods yet.
   */
  Sign(argument: _ferry_ca_v1_SignRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_ferry_ca_v1_SignResponse__Output>): grpc.ClientUnaryCall;
  Sign(argument: _ferry_ca_v1_SignRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_ferry_ca_v1_SignResponse__Output>): grpc.ClientUnaryCall;
  Sign(argument: _ferry_ca_v1_SignRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_ferry_ca_v1_SignResponse__Output>): grpc.ClientUnaryCall;
  Sign(argument: _ferry_ca_v1_SignRequest, callback: grpc.requestCallback<_ferry_ca_v1_SignResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Sign a workload CSR. Allowed only for a service account that has a pod scheduled on the
   * calling agent's node and not terminated; PERMISSION_DENIED otherwise, naming the identity and
   * the node. INVALID_ARGUMENT for a malformed or oversized CSR, RESOURCE_EXHAUSTED past the
   * per-agent rate, UNAVAILABLE while the controller has not loaded the CA or the pods yet.
   */
  sign(argument: _ferry_ca_v1_SignRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_ferry_ca_v1_SignResponse__Output>): grpc.ClientUnaryCall;
  sign(argument: _ferry_ca_v1_SignRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_ferry_ca_v1_SignResponse__Output>): grpc.ClientUnaryCall;
  sign(argument: _ferry_ca_v1_SignRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_ferry_ca_v1_SignResponse__Output>): grpc.ClientUnaryCall;
  sign(argument: _ferry_ca_v1_SignRequest, callback: grpc.requestCallback<_ferry_ca_v1_SignResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * The roots to trust: the current bundle at once, then every change (a root rotation's phases).
   */
  WatchTrustBundle(argument: _ferry_ca_v1_WatchTrustBundleRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_ferry_ca_v1_TrustBundle__Output>;
  WatchTrustBundle(argument: _ferry_ca_v1_WatchTrustBundleRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_ferry_ca_v1_TrustBundle__Output>;
  /**
   * The roots to trust: the current bundle at once, then every change (a root rotation's phases).
   */
  watchTrustBundle(argument: _ferry_ca_v1_WatchTrustBundleRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_ferry_ca_v1_TrustBundle__Output>;
  watchTrustBundle(argument: _ferry_ca_v1_WatchTrustBundleRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_ferry_ca_v1_TrustBundle__Output>;
  
}

export interface CertificateServiceHandlers extends grpc.UntypedServiceImplementation {
  /**
   * Sign a workload CSR. Allowed only for a service account that has a pod scheduled on the
   * calling agent's node and not terminated; PERMISSION_DENIED otherwise, naming the identity and
   * the node. INVALID_ARGUMENT for a malformed or oversized CSR, RESOURCE_EXHAUSTED past the
   * per-agent rate, UNAVAILABLE while the controller has not loaded the CA or the pods yet.
   */
  Sign: grpc.handleUnaryCall<_ferry_ca_v1_SignRequest__Output, _ferry_ca_v1_SignResponse>;
  
  /**
   * The roots to trust: the current bundle at once, then every change (a root rotation's phases).
   */
  WatchTrustBundle: grpc.handleServerStreamingCall<_ferry_ca_v1_WatchTrustBundleRequest__Output, _ferry_ca_v1_TrustBundle>;
  
}

export interface CertificateServiceDefinition extends grpc.ServiceDefinition {
  Sign: MethodDefinition<_ferry_ca_v1_SignRequest, _ferry_ca_v1_SignResponse, _ferry_ca_v1_SignRequest__Output, _ferry_ca_v1_SignResponse__Output>
  WatchTrustBundle: MethodDefinition<_ferry_ca_v1_WatchTrustBundleRequest, _ferry_ca_v1_TrustBundle, _ferry_ca_v1_WatchTrustBundleRequest__Output, _ferry_ca_v1_TrustBundle__Output>
}
