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

/* SO_MARK carried by every socket the agent makes; the programs let such sockets pass. */
#define FERRY_SOCKET_MARK 0xFE44

/* Map sizes. */
#define FERRY_MAX_PODS 1024
#define FERRY_MAX_POD_IPS 2048
#define FERRY_MAX_TRACKED_SOCKETS 65536
#define FERRY_MAX_SERVICES 4096
#define FERRY_MAX_BACKENDS 65536

/* Per-pod exclusions the agent writes from the pod's annotations. */
#define FERRY_MAX_EXCLUDED_PORTS 8
#define FERRY_MAX_EXCLUDED_CIDRS 4

/* struct ferry_pod.flags */
#define FERRY_POD_ENROLLED 0x1

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
};

#endif /* FERRY_SHARED_H */
