// Ferry's ports and socket mark: the one definition in TypeScript. bpf/include/ferry-shared.h holds
// the C side; test/bpf/shared-constants.test.ts fails when the two disagree.

export const PORTS = {
  admin: 15000,
  outbound: 15001,
  inbound: 15006,
  hbone: 15008,
  metrics: 15020,
  readiness: 15021,
  dns: 15053,
} as const;

/** SO_MARK on every socket the agent makes; the BPF programs never capture a socket carrying it. */
export const SOCKET_MARK = 0xfe44;
