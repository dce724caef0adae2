/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Every map Ferry's programs share, defined once. Each object that includes this header declares
 * the same maps; libbpf pins them by name under the agent's pin root (LIBBPF_PIN_BY_NAME), so the
 * connect, sock_ops and sk_lookup objects all end up using one instance of each map, and a
 * restarted agent re-adopts the instances the kernel kept pinned. */
#ifndef FERRY_MAPS_H
#define FERRY_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "ferry-shared.h"

/* Network-namespace cookie -> enrolled pod. Filled by the agent on enrolment. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FERRY_MAX_PODS);
	__type(key, __u64);
	__type(value, struct ferry_pod);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ferry_pods SEC(".maps");

/* Socket cookie -> the destination the app asked for, written by connect4/6 and copied by sock_ops
 * into ferry_conn_origin when the SYN leaves. The agent deletes the entry once it has read the
 * connection's origin, so the map holds only connects still on their way to the agent. LRU: a
 * connect that never sends a SYN (it failed first) leaves an entry nobody deletes; it ages out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FERRY_MAX_TRACKED_SOCKETS);
	__type(key, __u64);
	__type(value, struct ferry_sockaddr);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ferry_orig_dst SEC(".maps");

/* (netns cookie, family, client port) -> original destination, written by sock_ops when the
 * captured socket sends its SYN, so the agent can find it from the accepted socket's peer port.
 * The agent deletes an entry once it has read it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FERRY_MAX_TRACKED_SOCKETS);
	__type(key, struct ferry_conn_key);
	__type(value, struct ferry_origin);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ferry_conn_origin SEC(".maps");

/* Pod IP -> that pod's inbound (15006) listener, for sk_lookup to steer to. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, FERRY_MAX_POD_IPS);
	__type(key, struct ferry_ip);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ferry_inbound SEC(".maps");

/* Pod IP -> FERRY_POD_ENROLLED. Present while the pod is enrolled, also when its listener is
 * gone, which is how sk_lookup knows to refuse rather than deliver around the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FERRY_MAX_POD_IPS);
	__type(key, struct ferry_ip);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ferry_pod_ips SEC(".maps");

/* Service VIP:port -> backend set, for sockets that are not captured (see FERRY_CONFIG_SERVICE_LB). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FERRY_MAX_SERVICES);
	__type(key, struct ferry_service_key);
	__type(value, struct ferry_service);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ferry_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FERRY_MAX_BACKENDS);
	__type(key, struct ferry_backend_key);
	__type(value, struct ferry_sockaddr);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ferry_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ferry_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ferry_config SEC(".maps");

/* Connections the agent is delivering to an app with the client's address as source: filed by
 * sock_ops when the agent's transparent socket sends its SYN, consulted by sk_lookup (which must
 * let exactly these reach the app instead of steering them back to the agent), deleted by sock_ops
 * when that socket reaches TCP_CLOSE. Deleting at close rather than at establishment keeps the
 * entry while the 4-tuple is in use (a SYN-cookie ACK still finds its way), and no later SYN from
 * a real client reusing the 4-tuple can slip past the agent. LRU as a last resort only. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FERRY_MAX_DELIVERIES);
	__type(key, struct ferry_delivery_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ferry_deliveries SEC(".maps");

/* One counter per FERRY_VERDICT_*, added to atomically by every program. A plain array, not a
 * per-CPU one: the agent reads it with one lookup per entry, and the counters are not hot enough
 * for contention to matter next to the work each verdict stands for. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FERRY_VERDICT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ferry_verdicts SEC(".maps");

#endif /* FERRY_MAPS_H */
