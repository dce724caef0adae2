// src/net: address arithmetic and the one IP address / network parser, with no Ferry dependencies, for the
// modules above it.
export { formatIpv4, formatIpv6, ipv6ToBigInt, parseIpv4 } from './ip';
export {
  formatIpNetwork,
  ipNetworkContains,
  ipNetworkWarning,
  ipv4Mask,
  ipv6Mask,
  parseIp,
  parseIpNetwork,
  type IpAddress,
  type IpNetwork,
} from './ip-network';
