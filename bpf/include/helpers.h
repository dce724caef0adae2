/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Small inline helpers shared by the programs: address tests, verdict counters and the test for the
 * agent's own sockets. */
#ifndef FERRY_HELPERS_H
#define FERRY_HELPERS_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "ferry-shared.h"
#include "maps.h"

#define FERRY_LOOPBACK_IFINDEX 1            /* "lo" is always ifindex 1 in a network namespace */
#define FERRY_IPV4_LOOPBACK_NET 0x7f000000  /* 127.0.0.0/8, host byte order */
#define FERRY_IPV4_LOOPBACK_MASK 0xff000000
#define FERRY_IPV4_LOOPBACK_ADDR 0x7f000001 /* 127.0.0.1 */
#define FERRY_V4_MAPPED_PREFIX 0x0000ffff   /* ::ffff:0:0/96, third word, host byte order */

/* Verdicts of cgroup/connect* programs: 1 lets connect() go on (with any rewrite), 0 fails it with EPERM. */
#define FERRY_CONNECT_PROCEED 1
#define FERRY_CONNECT_REFUSE 0

static __always_inline void ferry_count(__u32 verdict)
{
	__u64 *counter = bpf_map_lookup_elem(&ferry_verdicts, &verdict);

	if (counter)
		__sync_fetch_and_add(counter, 1);
}

/* One of the agent's own sockets: it carries one of the agent's marks AND the task using it runs in
 * the agent's cgroup — or, during a hand-over, in its peer's (the agent before or after it on this
 * node). The mark alone proves nothing (socket(7): SO_MARK needs only CAP_NET_RAW or CAP_NET_ADMIN in
 * the socket's user namespace, which a pod may hold); a task cannot move itself into another cgroup
 * without write access to the cgroup filesystem. Runs in the task's context (connect hooks, sock_ops
 * TCP_CONNECT_CB), where bpf_get_current_cgroup_id() is the caller's. */
static __always_inline int ferry_is_agent_socket(__u32 mark)
{
	__u32 zero = 0;
	struct ferry_config *config;
	__u64 current;

	if (mark != FERRY_SOCKET_MARK && mark != FERRY_DELIVERY_MARK)
		return 0;
	config = bpf_map_lookup_elem(&ferry_config, &zero);
	if (!config)
		return 0;
	current = bpf_get_current_cgroup_id();
	return (config->agent_cgroup_id != 0 && current == config->agent_cgroup_id) ||
	       (config->peer_cgroup_id != 0 && current == config->peer_cgroup_id);
}

/* 127.0.0.0/8, and 0.0.0.0: connect(2) to INADDR_ANY reaches this host over loopback
 * (ip_route_connect() fills in INADDR_LOOPBACK), so it is the pod's own business like 127.0.0.1. */
static __always_inline int ferry_ipv4_is_loopback(__u32 addr_be)
{
	return addr_be == 0 || (bpf_ntohl(addr_be) & FERRY_IPV4_LOOPBACK_MASK) == FERRY_IPV4_LOOPBACK_NET;
}

/* addr_be: an IPv6 address as four network-order words. */
static __always_inline int ferry_ipv6_is_v4_mapped(const __u32 *addr_be)
{
	return addr_be[0] == 0 && addr_be[1] == 0 && addr_be[2] == bpf_htonl(FERRY_V4_MAPPED_PREFIX);
}

/* ::1, and :: (tcp_v6_connect() turns a connect to the unspecified address into one to ::1). */
static __always_inline int ferry_ipv6_is_loopback(const __u32 *addr_be)
{
	return addr_be[0] == 0 && addr_be[1] == 0 && addr_be[2] == 0 && (addr_be[3] == bpf_htonl(1) || addr_be[3] == 0);
}

/* Network-order mask of the first `bits` bits of a 32-bit word (bits clamped to 0..32). */
static __always_inline __u32 ferry_prefix_mask(__s32 bits)
{
	if (bits <= 0)
		return 0;
	if (bits >= 32)
		return 0xffffffff;
	return bpf_htonl(0xffffffffu << (32 - bits));
}

/* Does the address (family, four network-order words) fall in the CIDR? */
static __always_inline int ferry_cidr_contains(const struct ferry_cidr *cidr, __u32 family, const __u32 *addr_be)
{
	const __u32 *net = (const __u32 *)cidr->addr;
	__s32 prefix = cidr->prefix_len;
	int i;

	if (cidr->family != family)
		return 0;
#pragma unroll
	for (i = 0; i < 4; i++) {
		__u32 mask = ferry_prefix_mask(prefix - 32 * i);
		if ((addr_be[i] & mask) != (net[i] & mask))
			return 0;
	}
	return 1;
}

/* A pod's exclusions: destination port (host order) or address in one of its excluded CIDRs. */
static __always_inline int ferry_pod_excludes(const struct ferry_pod *pod, __u32 family, const __u32 *addr_be, __u32 port)
{
	int i;

#pragma unroll
	for (i = 0; i < FERRY_MAX_EXCLUDED_PORTS; i++) {
		if (pod->excluded_ports[i] != 0 && pod->excluded_ports[i] == port)
			return 1;
	}
#pragma unroll
	for (i = 0; i < FERRY_MAX_EXCLUDED_CIDRS; i++) {
		if (ferry_cidr_contains(&pod->excluded_cidrs[i], family, addr_be))
			return 1;
	}
	return 0;
}

#endif /* FERRY_HELPERS_H */
