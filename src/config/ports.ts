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

/**
 * SO_MARK on every socket the agent makes; the BPF programs let such a socket pass only when it is
 * used by a task in the agent's own cgroup.
 */
export const SOCKET_MARK = 0xfe44;

/**
 * The agent's sockets that deliver to an app with the real client's address as source, and the
 * policy routing inside each enrolled pod that brings the app's replies back to them: a rule
 * `fwmark DELIVERY.mark lookup DELIVERY.table` and a route `local default dev lo` in that table
 * (native configurePodRouting); with tcp_fwmark_accept the app's accepted socket carries the mark,
 * so its replies are delivered locally instead of routed out of the pod.
 */
export const DELIVERY = {
  mark: 0xfe45,
  table: 15006,
} as const;
