// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* sock_ops: when a captured socket sends its SYN, file its original destination under the
 * (netns, client port) pair the agent sees on the accepted side of the outbound listener. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "ferry-shared.h"
#include "maps.h"
#include "helpers.h"

/* BPF_SOCK_OPS_TCP_CONNECT_CB runs from tcp_connect(), after inet_hash_connect() chose the local
 * port and before the SYN is sent (net/ipv4/tcp_output.c), so the entry exists before the agent
 * can accept the connection: there is no race with the listener. */
static __always_inline void ferry_file_origin(struct bpf_sock_ops *skops)
{
	__u64 cookie = bpf_get_socket_cookie(skops);
	struct ferry_sockaddr *dst = bpf_map_lookup_elem(&ferry_orig_dst, &cookie);
	struct ferry_conn_key key = {};
	struct ferry_origin origin = {};

	if (!dst)
		return;
	key.netns_cookie = bpf_get_netns_cookie(skops);
	/* A v4-mapped IPv6 socket reaches the IPv4 listener: file it as IPv4, as the agent sees it. */
	key.family = skops->family;
	if (skops->family == FERRY_AF_INET6 && skops->remote_ip6[0] == 0 && skops->remote_ip6[1] == 0 &&
	    skops->remote_ip6[2] == bpf_htonl(FERRY_V4_MAPPED_PREFIX))
		key.family = FERRY_AF_INET;
	key.local_port = skops->local_port; /* host byte order, unlike remote_port (uapi/linux/bpf.h) */
	origin.dst = *dst;
	origin.socket_cookie = cookie;
	bpf_map_update_elem(&ferry_conn_origin, &key, &origin, BPF_ANY);
}

SEC("sockops")
int ferry_sock_ops(struct bpf_sock_ops *skops)
{
	if (skops->op == BPF_SOCK_OPS_TCP_CONNECT_CB)
		ferry_file_origin(skops);
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
