// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* sock_ops: when a captured socket sends its SYN, file its original destination under the
 * (netns, client port) pair the agent sees on the accepted side of the outbound listener; when the
 * agent's delivery socket sends its SYN, file its 4-tuple for sk_lookup, and drop it at close. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "ferry-shared.h"
#include "maps.h"
#include "helpers.h"

#define FERRY_TCP_CLOSE 7 /* TCP_CLOSE in include/net/tcp_states.h; BPF_SOCK_OPS_STATE_CB's args[1] */

/* BPF_SOCK_OPS_TCP_CONNECT_CB runs from tcp_connect(), after inet_hash_connect() chose the local
 * port and before the SYN is sent (net/ipv4/tcp_output.c), so the entry exists before the agent
 * can accept the connection: there is no race with the listener. */
static __always_inline int ferry_file_origin(struct bpf_sock_ops *skops)
{
	__u64 cookie = bpf_get_socket_cookie(skops);
	struct ferry_sockaddr *dst = bpf_map_lookup_elem(&ferry_orig_dst, &cookie);
	struct ferry_conn_key key = {};
	struct ferry_origin origin = {};

	if (!dst)
		return 0;
	key.netns_cookie = bpf_get_netns_cookie(skops);
	/* A v4-mapped IPv6 socket reaches the IPv4 listener: file it as IPv4, as the agent sees it. */
	key.family = skops->family;
	if (skops->family == FERRY_AF_INET6 && skops->remote_ip6[0] == 0 && skops->remote_ip6[1] == 0 &&
	    skops->remote_ip6[2] == bpf_htonl(FERRY_V4_MAPPED_PREFIX))
		key.family = FERRY_AF_INET;
	key.local_port = skops->local_port; /* host byte order, unlike remote_port (uapi/linux/bpf.h) */
	origin.dst = *dst;
	origin.socket_cookie = cookie;
	if (bpf_map_update_elem(&ferry_conn_origin, &key, &origin, BPF_ANY) != 0)
		ferry_count(FERRY_VERDICT_SOCK_OPS_FILE_FAILED);
	else
		ferry_count(FERRY_VERDICT_SOCK_OPS_ORIGIN);
	return 1;
}

/* The delivery socket's 4-tuple as sk_lookup will see its SYN arrive: the socket's remote end is
 * the app (sk_lookup's local), its bound source the client address (sk_lookup's remote). Every
 * field is loaded from ctx before branching on the family: the verifier rejects ctx loads through a
 * pointer the compiler offset from ctx ("dereference of modified ctx ptr"), which is what a
 * family-dependent load compiles to otherwise. */
static __always_inline void ferry_delivery_key(struct bpf_sock_ops *skops, struct ferry_delivery_key *key)
{
	__u32 family = skops->family;
	__u32 remote_port = skops->remote_port;
	__u32 local_port = skops->local_port;
	__u32 remote4 = skops->remote_ip4;
	__u32 local4 = skops->local_ip4;
	__u32 remote6[4], local6[4];

	remote6[0] = skops->remote_ip6[0];
	remote6[1] = skops->remote_ip6[1];
	remote6[2] = skops->remote_ip6[2];
	remote6[3] = skops->remote_ip6[3];
	local6[0] = skops->local_ip6[0];
	local6[1] = skops->local_ip6[1];
	local6[2] = skops->local_ip6[2];
	local6[3] = skops->local_ip6[3];
	key->family = family;
	key->local_port = bpf_ntohl(remote_port); /* the port in network order in 32 bits (uapi/linux/bpf.h) */
	key->remote_port = local_port;            /* host byte order */
	if (family == FERRY_AF_INET) {
		*(__u32 *)key->local = remote4;
		*(__u32 *)key->remote = local4;
	} else {
		__builtin_memcpy(key->local, remote6, sizeof(key->local));
		__builtin_memcpy(key->remote, local6, sizeof(key->remote));
	}
}

/* At TCP_CONNECT_CB for a socket the agent uses to deliver to an app (delivery mark, the agent's
 * cgroup: the check runs in the connecting task's context), file it for sk_lookup and ask for
 * state callbacks so the entry goes when the socket closes. */
static __always_inline void ferry_file_delivery(struct bpf_sock_ops *skops)
{
	struct ferry_delivery_key key = {};
	struct bpf_sock *sk = skops->sk;
	__u32 one = 1;

	if (!sk || !ferry_is_agent_socket(sk->mark) || sk->mark != FERRY_DELIVERY_MARK)
		return;
	ferry_delivery_key(skops, &key);
	if (bpf_map_update_elem(&ferry_deliveries, &key, &one, BPF_ANY) != 0) {
		/* sk_lookup will steer the SYN to the agent's own inbound listener, which refuses it. */
		ferry_count(FERRY_VERDICT_SOCK_OPS_FILE_FAILED);
		return;
	}
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
	ferry_count(FERRY_VERDICT_SOCK_OPS_DELIVERY);
}

SEC("sockops")
int ferry_sock_ops(struct bpf_sock_ops *skops)
{
	struct ferry_delivery_key key = {};

	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		if (!ferry_file_origin(skops))
			ferry_file_delivery(skops);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		/* Only delivery sockets asked for state callbacks. Every way out (reset, refused, timed
		 * out, FIN either way, TIME_WAIT) passes through TCP_CLOSE (tcp_done, tcp_set_state). */
		if (skops->args[1] == FERRY_TCP_CLOSE) {
			ferry_delivery_key(skops, &key);
			bpf_map_delete_elem(&ferry_deliveries, &key);
		}
		break;
	}
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
