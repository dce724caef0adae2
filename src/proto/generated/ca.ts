import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { CertificateServiceClient as _ferry_ca_v1_CertificateServiceClient, CertificateServiceDefinition as _ferry_ca_v1_CertificateServiceDefinition } from './ferry/ca/v1/CertificateService';
import type { SignRequest as _ferry_ca_v1_SignRequest, SignRequest__Output as _ferry_ca_v1_SignRequest__Output } from './ferry/ca/v1/SignRequest';
import type { SignResponse as _ferry_ca_v1_SignResponse, SignResponse__Output as _ferry_ca_v1_SignResponse__Output } from './ferry/ca/v1/SignResponse';
import type { TrustBundle as _ferry_ca_v1_TrustBundle, TrustBundle__Output as _ferry_ca_v1_TrustBundle__Output } from './ferry/ca/v1/TrustBundle';
import type { WatchTrustBundleRequest as _ferry_ca_v1_WatchTrustBundleRequest, WatchTrustBundleRequest__Output as _ferry_ca_v1_WatchTrustBundleRequest__Output } from './ferry/ca/v1/WatchTrustBundleRequest';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  ferry: {
    ca: {
      v1: {
        CertificateService: SubtypeConstructor<typeof grpc.Client, _ferry_ca_v1_CertificateServiceClient> & { service: _ferry_ca_v1_CertificateServiceDefinition }
        RotationPhase: EnumTypeDefinition
        SignRequest: MessageTypeDefinition<_ferry_ca_v1_SignRequest, _ferry_ca_v1_SignRequest__Output>
        SignResponse: MessageTypeDefinition<_ferry_ca_v1_SignResponse, _ferry_ca_v1_SignResponse__Output>
        TrustBundle: MessageTypeDefinition<_ferry_ca_v1_TrustBundle, _ferry_ca_v1_TrustBundle__Output>
        WatchTrustBundleRequest: MessageTypeDefinition<_ferry_ca_v1_WatchTrustBundleRequest, _ferry_ca_v1_WatchTrustBundleRequest__Output>
      }
    }
  }
}

