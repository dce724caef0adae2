// src/net: address arithmetic with no Ferry dependencies, for the modules above it.
export { ipv6ToBigInt, parseIpv4 } from './ip';
