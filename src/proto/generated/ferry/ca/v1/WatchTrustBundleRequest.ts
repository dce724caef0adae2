// Original file: proto/ferry/ca/v1/ca.proto


export interface WatchTrustBundleRequest {
}

export interface WatchTrustBundleRequest__Output {
}
