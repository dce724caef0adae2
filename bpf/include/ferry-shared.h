/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Constants and map layouts shared by Ferry's BPF programs and the agent.
 * TypeScript mirrors this file in src/capture/bpf-layout.ts; test/bpf/shared-constants.test.ts
 * compiles this header on the host and fails when the two sides drift. Plain C, no BPF-only
 * types, so the host compiler can include it too. */
#ifndef FERRY_SHARED_H
#define FERRY_SHARED_H

#include <linux/types.h>

/* Ports the agent binds inside every enrolled pod's network namespace, and its own. */
#define FERRY_PORT_ADMIN 15000
#define FERRY_PORT_OUTBOUND 15001
#define FERRY_PORT_INBOUND 15006
#define FERRY_PORT_HBONE 15008
#define FERRY_PORT_METRICS 15020
#define FERRY_PORT_READINESS 15021
#define FERRY_PORT_DNS 15053

/* SO_MARK carried by every socket the agent makes. The programs let such a socket pass only when it
 * also belongs to the agent's own cgroup (ferry_config.agent_cgroup_id): a pod with CAP_NET_RAW or
 * CAP_NET_ADMIN can set any mark on its own sockets, but cannot leave its cgroup. */
#define FERRY_SOCKET_MARK 0xFE44
/* SO_MARK of the agent's sockets that deliver a connection to an app inside its pod with the real
 * client's address as source (IP_TRANSPARENT). Besides passing the programs like FERRY_SOCKET_MARK, it
 * is what the pod's policy route for replies matches: with net.ipv4.tcp_fwmark_accept the app's
 * accepted socket inherits it, so its replies go to the local agent socket, not out of the pod. */
#define FERRY_DELIVERY_MARK 0xFE45

/* Map sizes. */
#define FERRY_MAX_PODS 1024
#define FERRY_MAX_POD_IPS 2048
#define FERRY_MAX_TRACKED_SOCKETS 65536
#define FERRY_MAX_SERVICES 4096
#define FERRY_MAX_BACKENDS 65536
#define FERRY_MAX_DELIVERIES 65536

/* Per-pod exclusions the agent writes from the pod's annotations. */
#define FERRY_MAX_EXCLUDED_PORTS 8
#define FERRY_MAX_EXCLUDED_CIDRS 4

/* struct ferry_pod.flags: exactly one of these. */
#define FERRY_POD_ENROLLED 0x1 /* captured: connects go to the pod's outbound listener */
#define FERRY_POD_LOCKED 0x2   /* enrolment not (yet) complete: connects that would be captured fail with EPERM */

/* struct ferry_config.flags */
#define FERRY_CONFIG_SERVICE_LB 0x1 /* translate Service VIPs for sockets that are not captured */

/* Address families as the kernel numbers them (AF_INET, AF_INET6 in <sys/socket.h>). */
#define FERRY_AF_INET 2
#define FERRY_AF_INET6 10

/* An IPv4 or IPv6 address; IPv4 uses the first four bytes of addr, the rest zero. */
struct ferry_ip {
	__u32 family;
	__u8 addr[16];
};

/* An address with a port in network byte order, as the kernel hands it to connect hooks. */
struct ferry_sockaddr {
	__u32 family;
	__u16 port_be;
	__u16 pad;
	__u8 addr[16];
};

struct ferry_cidr {
	__u32 family; /* 0: unused slot */
	__u32 prefix_len;
	__u8 addr[16];
};

/* ferry_pods: network-namespace cookie -> the enrolled pod. */
struct ferry_pod {
	__u32 flags;
	__u32 pod_id;
	__u16 excluded_ports[FERRY_MAX_EXCLUDED_PORTS]; /* host byte order, 0: unused */
	struct ferry_cidr excluded_cidrs[FERRY_MAX_EXCLUDED_CIDRS];
};

/* ferry_conn_origin key: the captured client socket as the outbound listener sees it. */
struct ferry_conn_key {
	__u64 netns_cookie;
	__u32 family;      /* of the connection on the wire: AF_INET also for v4-mapped v6 sockets */
	__u32 local_port;  /* the client's port, host byte order */
};

/* ferry_conn_origin value. */
struct ferry_origin {
	struct ferry_sockaddr dst;
	__u64 socket_cookie;
};

/* ferry_services key: a Service VIP and port. */
struct ferry_service_key {
	struct ferry_ip vip;
	__u32 port; /* host byte order */
};

struct ferry_service {
	__u32 service_id;
	__u32 backend_count;
};

struct ferry_backend_key {
	__u32 service_id;
	__u32 index;
};

/* ferry_config has one entry, at index 0. */
struct ferry_config {
	__u32 flags;
	__u32 pad;
	/* cgroup v2 id (the cgroup directory's inode) of the agent; only its marked sockets pass. */
	__u64 agent_cgroup_id;
	/* While an agent hands its listeners over to its successor, the other one's cgroup (0: none):
	 * both dial for the connections they serve until the predecessor has drained and exited. */
	__u64 peer_cgroup_id;
};

/* ferry_deliveries key: a connection request as sk_lookup sees it arrive at a pod (local = the app's
 * address and port, remote = the source the agent's transparent socket is bound to). */
struct ferry_delivery_key {
	__u32 family;
	__u16 local_port;  /* host byte order */
	__u16 remote_port; /* host byte order */
	__u8 local[16];
	__u8 remote[16];
};

/* ferry_verdicts: one counter per verdict, index = FERRY_VERDICT_*. The agent exports them as
 * ferry_bpf_verdicts_total{program,verdict}; keep the names in src/capture/bpf-layout.ts in step. */
#define FERRY_VERDICT_CONNECT_CAPTURED 0       /* connect redirected to the outbound listener */
#define FERRY_VERDICT_CONNECT_LOCKED 1         /* refused (EPERM): the pod's enrolment is not complete */
#define FERRY_VERDICT_CONNECT_AGENT 2          /* the agent's own socket: marked, in its cgroup */
#define FERRY_VERDICT_CONNECT_FOREIGN_MARK 3   /* marked but not the agent's: captured anyway */
#define FERRY_VERDICT_CONNECT_SERVICE_LB 4     /* uncaptured socket, Service VIP translated */
#define FERRY_VERDICT_CONNECT_ORIGIN_LOST 5    /* ferry_orig_dst update failed: the agent will reset it */
#define FERRY_VERDICT_SK_LOOKUP_STEERED 6      /* inbound connection assigned to the pod's inbound listener */
#define FERRY_VERDICT_SK_LOOKUP_REFUSED 7      /* enrolled pod without a listener: refused (fail closed) */
#define FERRY_VERDICT_SK_LOOKUP_DELIVERY 8     /* the agent delivering to the app with the client's address */
#define FERRY_VERDICT_SOCK_OPS_ORIGIN 9        /* a captured socket's origin filed for the agent */
#define FERRY_VERDICT_SOCK_OPS_DELIVERY 10     /* a delivery connection filed for sk_lookup */
#define FERRY_VERDICT_SOCK_OPS_FILE_FAILED 11  /* a ferry_conn_origin or ferry_deliveries update failed */
#define FERRY_VERDICT_COUNT 12

#endif /* FERRY_SHARED_H */
