// src/net: address arithmetic with no Ferry dependencies, for the modules above it.
export { formatIpv6, ipv6ToBigInt, parseIpv4 } from './ip';
