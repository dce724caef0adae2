// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* sk_lookup on each enrolled pod's network namespace: steer inbound TCP connection requests for
 * the pod's addresses to the agent's inbound listener (15006), whatever the destination port, except
 * HBONE (15008, the agent's own mutual-TLS listener), the agent's own deliveries to the app, and
 * what the pod sends itself. */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "ferry-shared.h"
#include "maps.h"
#include "helpers.h"

SEC("sk_lookup")
int ferry_sk_lookup(struct bpf_sk_lookup *ctx)
{
	struct ferry_delivery_key delivery = {};
	struct ferry_ip key = {};
	struct bpf_sock *sk;
	__u32 local4, local6[4], remote4, remote6[4];
	long err;

	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	/* Connections to 127.0.0.0/8 or ::1 are the pod's own business. */
	if (ctx->ingress_ifindex == FERRY_LOOPBACK_IFINDEX)
		return SK_PASS;
	/* HBONE is the agent's listener on the pod's address; it authenticates and authorizes itself.
	 * Every other port, Ferry's numbers included, is the app's and gets the mesh's policy. */
	if (ctx->local_port == FERRY_PORT_HBONE)
		return SK_PASS;

	/* Load every address word straight from ctx before branching: the verifier rejects ctx
	 * accesses through a pointer the compiler derived by adding an offset to ctx ("dereference
	 * of modified ctx ptr"), which is what a family-dependent load otherwise compiles to. */
	local4 = ctx->local_ip4;
	local6[0] = ctx->local_ip6[0];
	local6[1] = ctx->local_ip6[1];
	local6[2] = ctx->local_ip6[2];
	local6[3] = ctx->local_ip6[3];
	remote4 = ctx->remote_ip4;
	remote6[0] = ctx->remote_ip6[0];
	remote6[1] = ctx->remote_ip6[1];
	remote6[2] = ctx->remote_ip6[2];
	remote6[3] = ctx->remote_ip6[3];
	key.family = ctx->family;
	delivery.family = ctx->family;
	delivery.local_port = ctx->local_port;
	/* remote_port is the port in network byte order (uapi/linux/bpf.h, struct bpf_sk_lookup). */
	delivery.remote_port = bpf_ntohs(ctx->remote_port);
	if (key.family == FERRY_AF_INET) {
		/* A connection from the pod to its own address: the kernel picks that address as the source.
		 * (Its ingress ifindex is the pod's eth0, not lo: for a local route the kernel records the
		 * device holding the address, see ip_route_output_key_hash_rcu.) */
		if (remote4 == local4)
			return SK_PASS;
		*(__u32 *)key.addr = local4;
		*(__u32 *)delivery.local = local4;
		*(__u32 *)delivery.remote = remote4;
	} else {
		if (remote6[0] == local6[0] && remote6[1] == local6[1] && remote6[2] == local6[2] && remote6[3] == local6[3])
			return SK_PASS;
		__builtin_memcpy(key.addr, local6, sizeof(key.addr));
		__builtin_memcpy(delivery.local, local6, sizeof(delivery.local));
		__builtin_memcpy(delivery.remote, remote6, sizeof(delivery.remote));
	}
	if (!bpf_map_lookup_elem(&ferry_pod_ips, &key))
		return SK_PASS;

	/* The agent delivering an authorized connection to the app with the client's address: the
	 * app's own listener must get it. sock_ops filed exactly this 4-tuple for a socket of the
	 * agent's cgroup with the delivery mark. */
	if (bpf_map_lookup_elem(&ferry_deliveries, &delivery)) {
		ferry_count(FERRY_VERDICT_SK_LOOKUP_DELIVERY);
		return SK_PASS;
	}

	/* Enrolled: the agent's listener or nothing. Without a listener (agent gone, enrolment not
	 * complete) the connection is refused, never delivered around the mesh (fail closed). */
	sk = bpf_map_lookup_elem(&ferry_inbound, &key);
	if (!sk) {
		ferry_count(FERRY_VERDICT_SK_LOOKUP_REFUSED);
		return SK_DROP;
	}
	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		ferry_count(FERRY_VERDICT_SK_LOOKUP_REFUSED);
		return SK_DROP;
	}
	ferry_count(FERRY_VERDICT_SK_LOOKUP_STEERED);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
