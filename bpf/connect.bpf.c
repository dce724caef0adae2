// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* cgroup/connect4 and cgroup/connect6: redirect the TCP connects of enrolled pods to the pod's
 * outbound listener (loopback:15001), remembering the original destination under the socket
 * cookie; refuse them for a pod whose enrolment is incomplete; for sockets that are not captured,
 * optionally translate Service VIPs to a backend. */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "ferry-shared.h"
#include "maps.h"
#include "helpers.h"

/* The address a connect hook sees, normalised: IPv4 (also v4-mapped IPv6) in word 0. */
struct ferry_dst {
	__u32 family;   /* of the connection on the wire */
	__u32 port;     /* host byte order */
	__u32 addr[4];  /* network byte order words */
};

static __always_inline int ferry_service_lb_enabled(void)
{
	__u32 zero = 0;
	struct ferry_config *config = bpf_map_lookup_elem(&ferry_config, &zero);

	return config && (config->flags & FERRY_CONFIG_SERVICE_LB);
}

/* Pick a backend for a Service VIP, or NULL when dst is no VIP (or the Service has no backends). */
static __always_inline struct ferry_sockaddr *ferry_pick_backend(const struct ferry_dst *dst)
{
	struct ferry_service_key key = {};
	struct ferry_backend_key backend = {};
	struct ferry_service *service;

	key.vip.family = dst->family;
	__builtin_memcpy(key.vip.addr, dst->addr, sizeof(key.vip.addr));
	key.port = dst->port;
	service = bpf_map_lookup_elem(&ferry_services, &key);
	if (!service || service->backend_count == 0)
		return NULL;
	backend.service_id = service->service_id;
	backend.index = bpf_get_prandom_u32() % service->backend_count;
	return bpf_map_lookup_elem(&ferry_backends, &backend);
}

/* Record dst under the socket cookie for sock_ops to pick up when the SYN goes out. */
static __always_inline int ferry_remember(__u64 cookie, const struct ferry_dst *dst)
{
	struct ferry_sockaddr orig = {};

	orig.family = dst->family;
	orig.port_be = bpf_htons(dst->port);
	__builtin_memcpy(orig.addr, dst->addr, sizeof(orig.addr));
	return bpf_map_update_elem(&ferry_orig_dst, &cookie, &orig, BPF_ANY);
}

enum ferry_connect_action {
	FERRY_AGENT,   /* the agent's own socket: untouched (the agent resolves Service VIPs itself) */
	FERRY_LEAVE,   /* not captured: proceed, translating a Service VIP when that is on */
	FERRY_CAPTURE, /* redirect to the pod's outbound listener (the origin is recorded) */
	FERRY_REFUSE,  /* fail connect() with EPERM: the pod must not reach anything around the mesh */
};

/* What to do with one connect(), counted. Loopback (and the unspecified address, which means
 * loopback) and excluded destinations are the pod's own business, also while its enrolment is
 * incomplete. */
static __always_inline enum ferry_connect_action ferry_connect_action(struct bpf_sock_addr *ctx, const struct ferry_dst *dst)
{
	__u64 netns_cookie = bpf_get_netns_cookie(ctx);
	__u32 mark = ctx->sk->mark;
	struct ferry_pod *pod;

	if (ferry_is_agent_socket(mark)) {
		ferry_count(FERRY_VERDICT_CONNECT_AGENT);
		return FERRY_AGENT;
	}
	if (mark == FERRY_SOCKET_MARK || mark == FERRY_DELIVERY_MARK)
		ferry_count(FERRY_VERDICT_CONNECT_FOREIGN_MARK);
	pod = bpf_map_lookup_elem(&ferry_pods, &netns_cookie);
	if (!pod || !(pod->flags & (FERRY_POD_ENROLLED | FERRY_POD_LOCKED)))
		return FERRY_LEAVE;
	if (dst->family == FERRY_AF_INET && ferry_ipv4_is_loopback(dst->addr[0]))
		return FERRY_LEAVE;
	if (dst->family == FERRY_AF_INET6 && ferry_ipv6_is_loopback(dst->addr))
		return FERRY_LEAVE;
	if (ferry_pod_excludes(pod, dst->family, dst->addr, dst->port))
		return FERRY_LEAVE;
	if (pod->flags & FERRY_POD_LOCKED) {
		ferry_count(FERRY_VERDICT_CONNECT_LOCKED);
		return FERRY_REFUSE;
	}
	/* Without the record the agent cannot tell where the connection was going and resets it: still
	 * captured (never around the mesh), but counted so a full map shows. */
	if (ferry_remember(bpf_get_socket_cookie(ctx), dst) != 0)
		ferry_count(FERRY_VERDICT_CONNECT_ORIGIN_LOST);
	ferry_count(FERRY_VERDICT_CONNECT_CAPTURED);
	return FERRY_CAPTURE;
}

SEC("cgroup/connect4")
int ferry_connect4(struct bpf_sock_addr *ctx)
{
	struct ferry_dst dst = {};
	struct ferry_sockaddr *backend;

	if (!ctx->sk || ctx->protocol != IPPROTO_TCP)
		return FERRY_CONNECT_PROCEED;
	dst.family = FERRY_AF_INET;
	dst.port = bpf_ntohs(ctx->user_port);
	dst.addr[0] = ctx->user_ip4;

	switch (ferry_connect_action(ctx, &dst)) {
	case FERRY_AGENT:
		return FERRY_CONNECT_PROCEED;
	case FERRY_REFUSE:
		return FERRY_CONNECT_REFUSE;
	case FERRY_CAPTURE:
		ctx->user_ip4 = bpf_htonl(FERRY_IPV4_LOOPBACK_ADDR);
		ctx->user_port = bpf_htons(FERRY_PORT_OUTBOUND);
		return FERRY_CONNECT_PROCEED;
	case FERRY_LEAVE:
		break;
	}
	if (ferry_service_lb_enabled()) {
		backend = ferry_pick_backend(&dst);
		if (backend && backend->family == FERRY_AF_INET) {
			ctx->user_ip4 = *(__u32 *)backend->addr;
			ctx->user_port = backend->port_be;
			ferry_count(FERRY_VERDICT_CONNECT_SERVICE_LB);
		}
	}
	return FERRY_CONNECT_PROCEED;
}

/* IPv6 sockets: native IPv6 destinations and v4-mapped ones (::ffff:a.b.c.d), which the kernel
 * connects over IPv4 without running connect4 (tcp_v6_connect calls tcp_v4_connect directly). */
SEC("cgroup/connect6")
int ferry_connect6(struct bpf_sock_addr *ctx)
{
	struct ferry_dst dst = {};
	struct ferry_sockaddr *backend;
	__u32 ip6[4];
	int mapped;

	if (!ctx->sk || ctx->protocol != IPPROTO_TCP)
		return FERRY_CONNECT_PROCEED;
	ip6[0] = ctx->user_ip6[0];
	ip6[1] = ctx->user_ip6[1];
	ip6[2] = ctx->user_ip6[2];
	ip6[3] = ctx->user_ip6[3];
	mapped = ferry_ipv6_is_v4_mapped(ip6);
	dst.port = bpf_ntohs(ctx->user_port);
	if (mapped) {
		dst.family = FERRY_AF_INET;
		dst.addr[0] = ip6[3];
	} else {
		dst.family = FERRY_AF_INET6;
		__builtin_memcpy(dst.addr, ip6, sizeof(dst.addr));
	}

	switch (ferry_connect_action(ctx, &dst)) {
	case FERRY_AGENT:
		return FERRY_CONNECT_PROCEED;
	case FERRY_REFUSE:
		return FERRY_CONNECT_REFUSE;
	case FERRY_CAPTURE:
		if (mapped) {
			ctx->user_ip6[3] = bpf_htonl(FERRY_IPV4_LOOPBACK_ADDR);
		} else {
			ctx->user_ip6[0] = 0;
			ctx->user_ip6[1] = 0;
			ctx->user_ip6[2] = 0;
			ctx->user_ip6[3] = bpf_htonl(1);
		}
		ctx->user_port = bpf_htons(FERRY_PORT_OUTBOUND);
		return FERRY_CONNECT_PROCEED;
	case FERRY_LEAVE:
		break;
	}
	if (ferry_service_lb_enabled()) {
		backend = ferry_pick_backend(&dst);
		if (backend && backend->family == dst.family) {
			const __u32 *addr = (const __u32 *)backend->addr;
			if (mapped) {
				ctx->user_ip6[3] = addr[0];
			} else {
				ctx->user_ip6[0] = addr[0];
				ctx->user_ip6[1] = addr[1];
				ctx->user_ip6[2] = addr[2];
				ctx->user_ip6[3] = addr[3];
			}
			ctx->user_port = backend->port_be;
			ferry_count(FERRY_VERDICT_CONNECT_SERVICE_LB);
		}
	}
	return FERRY_CONNECT_PROCEED;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
