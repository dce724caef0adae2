#!/usr/bin/env bash
# The demo: build everything, bring up the sandbox from examples/demo.yaml (with a Prometheus that
# scrapes the agents), show capture in the kernel, requests through Ferry in mutual TLS across
# nodes, a request refused by policy, then what the agents report: Istio's metrics, a Prometheus
# query, `ferry sandbox inspect`, and last the service graph of the traffic the demo made.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ferry() { node bin/ferry.js "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ -d /run/ferry/ferry ]; then ferry sandbox down; fi
step "ferry sandbox up -f examples/demo.yaml --prometheus"
ferry sandbox up -f examples/demo.yaml --prometheus
ferry sandbox status

CG=$(ferry sandbox status -o json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).nodes[0].cgroup))')
step "bpftool cgroup tree: Ferry's connect4/connect6/sock_ops programs on each node's cgroup"
bpftool cgroup tree "$(dirname "$CG")"
step "bpftool link: one sk_lookup (netns) link per enrolled pod"
bpftool link show | grep -A1 -E '^[0-9]+: netns' || true

step "legacy/client (namespace not enrolled) -> web.shop: not proxied on its side (no outbound record)"
ferry sandbox exec legacy/client -- curl -s -m 5 http://web.shop.svc.cluster.local/

step "shop/client -> web (same node as the client, through the node-a agent)"
ferry sandbox exec shop/client -- curl -s -m 5 http://web/

step "agent access log (node-a), last lines"
tail -n 3 /run/ferry/ferry/logs/agent-node-a.log | cut -c1-400

step "shop/client on node-a -> cart.shop, round robin over cart (node-b, through an HBONE tunnel) and cart-2 (node-a)"
FABRIC_PCAP=$(mktemp /tmp/ferry-demo-fabric.XXXXXX.pcap)
ip netns exec ferry-fabric tcpdump -i br0 -n --immediate-mode -U -s 0 -w "$FABRIC_PCAP" 'tcp' 2>/dev/null &
TCPDUMP=$!
sleep 1
for _ in 1 2; do ferry sandbox exec shop/client -- curl -s -m 5 -H 'x-demo: FERRY-PLAINTEXT-MARKER' http://cart.shop/; done
sleep 0.5
kill -INT "$TCPDUMP"; wait "$TCPDUMP" 2>/dev/null || true

step "what crossed the fabric between the nodes: TLS on 15008, never the request itself"
tcpdump -r "$FABRIC_PCAP" -n 'tcp port 15008 and tcp[tcpflags] & tcp-push != 0' 2>/dev/null | head -n 6
if grep -q 'FERRY-PLAINTEXT-MARKER' "$FABRIC_PCAP"; then echo "the request header crossed the fabric in clear!"; exit 1; fi
echo "the request's marker header does not appear anywhere in the capture ($(stat -c %s "$FABRIC_PCAP") bytes)"
rm -f "$FABRIC_PCAP"

step "the cross-node request, as the node-b agent logged it: mutual TLS, both SPIFFE identities"
grep '"destinationWorkload":"cart"' /run/ferry/ferry/logs/agent-node-b.log | grep '"direction":"inbound"' | grep '"path":"hbone"' | tail -n 1 | cut -c1-700

step "legacy/client -> cart.shop: refused by the AuthorizationPolicy shop/cart-from-shop-client (plaintext has no identity)"
ferry sandbox exec legacy/client -- curl -s -m 5 http://cart.shop/ || echo "curl exit $?: connection refused by policy"
sleep 0.5
grep -h '"component":"access"' /run/ferry/ferry/logs/agent-node-*.log | grep 'cart-from-shop-client' | tail -n 1 | cut -c1-600

step "node-b's agent, scraped on :15020/metrics: Istio's TCP metrics for the cart (reporter=destination)"
ip netns exec ferry-node-node-b curl -s http://127.0.0.1:15020/metrics \
  | grep -E '^istio_tcp_connections_opened_total\{reporter="destination"' | grep 'destination_workload="cart"' | cut -c1-600

step "Prometheus (Debian's, scraping every agent by the prometheus.io/* annotations): connections per edge"
sleep 3 # one more scrape interval, so the last requests are in
ferry sandbox query 'sum by (reporter, source_workload, source_workload_namespace, destination_service, connection_security_policy, response_flags) (istio_tcp_connections_opened_total)'

step "ferry sandbox inspect node-a workloads / certs: what the node-a agent holds"
ferry sandbox inspect node-a workloads
ferry sandbox inspect node-a certs

step "the service graph of the demo's traffic, merged from every agent's metrics"
ferry sandbox inspect graph --out /tmp/ferry-demo-graph.dot

step "the sandbox's API server, as kubectl sees it (kubeconfig: $(ferry sandbox kubeconfig))"
ferry sandbox kubectl get nodes -o wide
ferry sandbox kubectl get authorizationpolicies.security.istio.io -A
ferry sandbox kubectl get pods -A -o wide

printf '\nThe sandbox stays up: try `node bin/ferry.js sandbox exec shop/client -- curl -s http://cart/`;\n'
printf 'remove it with `node bin/ferry.js sandbox down`.\n'
