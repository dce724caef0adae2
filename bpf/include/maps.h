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

/* Socket cookie -> the destination the app asked for, written by connect4/6. LRU: the kernel
 * keeps no per-socket cleanup hook here, so old entries age out instead of leaking. */
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

#endif /* FERRY_MAPS_H */
