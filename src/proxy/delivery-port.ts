// The source port of a delivery to an app with the client's address. The agent's socket and the
// connection it was handed (accepted on 15006) live in the same network namespace with mirrored
// 4-tuples, which the kernel's port choice does not compare (inet_hash_connect checks the new
// socket's own tuple only): left to the kernel, a delivery from client:P to app:Q can take the port
// of a plaintext connection the same client has open to app:Q through the agent, and its SYN then
// lands on that connection (a challenge ACK, then a reset of both). So the agent picks the port.

/** Linux's default net.ipv4.ip_local_port_range. */
export const DELIVERY_PORT_RANGE = { first: 32768, last: 60999 } as const;

/**
 * A port in DELIVERY_PORT_RANGE that `inUse` does not claim, drawn at random (so concurrent
 * deliveries rarely meet on a bind), or 0 — the kernel's choice — when `attempts` draws all hit.
 */
export function pickDeliveryPort(inUse: (port: number) => boolean, random: () => number = Math.random, attempts = 16): number {
  const size = DELIVERY_PORT_RANGE.last - DELIVERY_PORT_RANGE.first + 1;
  for (let i = 0; i < attempts; i++) {
    const port = DELIVERY_PORT_RANGE.first + Math.min(size - 1, Math.floor(random() * size));
    if (!inUse(port)) return port;
  }
  return 0;
}
