// configurePodRouting: the reply path of a transparent proxy inside a pod's network namespace
// (policy rule, local route, tcp_fwmark_accept), set over rtnetlink by ferry.node.
import type { PodRoutingSpec } from './binding';
import { MAX_UINT32, requireBoolean, requireInteger, requireObject, requirePath } from './arguments';
import { awaitNative, nativeBinding, NativeArgumentError } from './errors';

/**
 * Priority of the fwmark rule. Rules are tried in ascending priority (ip-rule(8)): this one must
 * come after the local table (0), so the pod's own addresses stay local for everyone, and before
 * main (32766), which would route a reply to the client's address out of the pod. It matches
 * only packets with exactly the proxy's mark, so its place among the pod's other rules affects
 * nothing else. Fixed, so enabling twice finds the same rule and disabling removes exactly it.
 */
export const POD_ROUTING_RULE_PRIORITY = 32764;

/** Table ids the kernel reserves (rtnetlink.h rt_class_t): compat, default, main, local. */
const RESERVED_TABLES = new Set([252, 253, 254, 255]);

export interface PodRoutingOptions {
  /** The fwmark the proxy's transparent sockets carry (SO_MARK); 1..2^32-1, matched exactly. */
  mark: number;
  /** The routing table for the local default route; not 0 or 252..255. */
  table: number;
  /** Which families get a rule and a route: [4], [6] or [4, 6]. */
  families: Array<4 | 6>;
  /** true adds the rule and route (and sets the sysctl); false removes rule and route. */
  enable: boolean;
}

/**
 * Inside the network namespace at netnsPath, on a pool thread, over rtnetlink (no `ip`, no
 * iptables), per family: the rule `fwmark MARK/0xffffffff lookup TABLE` at
 * POD_ROUTING_RULE_PRIORITY and the route `local default dev lo table TABLE`; and
 * net.ipv4.tcp_fwmark_accept=1, so an app's accepted socket takes the mark of the SYN that made
 * it (IPv6 too). Together: a proxy socket in the pod with SO_MARK MARK, transparent and bound to
 * the real client's address, connects to the app, and the app's replies — marked — hit the rule
 * and are delivered locally to that socket instead of routed out of the pod.
 *
 * Idempotent: an existing rule or route counts as added, a missing one as removed. Disabling
 * leaves the sysctl at 1 (harmless without the rule: it only copies marks). Failures reject with
 * a NativeError whose syscall is the netlink message (RTM_NEWRULE, RTM_DELROUTE, ...) and whose
 * message names the rule or route and the namespace.
 */
export async function configurePodRouting(netnsPath: string, options: PodRoutingOptions): Promise<void> {
  const call = 'configurePodRouting';
  requirePath(call, 'netnsPath', netnsPath);
  const given = requireObject(call, 'options', options);
  const mark = requireInteger(call, 'options.mark', given.mark, 1, MAX_UINT32);
  const table = requireInteger(call, 'options.table', given.table, 1, MAX_UINT32);
  if (RESERVED_TABLES.has(table)) {
    throw new NativeArgumentError(
      call,
      'options.table',
      'a table id other than the reserved 252 (compat), 253 (default), 254 (main) and 255 (local)',
      table,
    );
  }
  const families = given.families;
  if (
    !Array.isArray(families) ||
    families.length === 0 ||
    families.length > 2 ||
    !families.every((family) => family === 4 || family === 6) ||
    new Set(families).size !== families.length
  ) {
    throw new NativeArgumentError(call, 'options.families', 'a non-empty array of distinct families 4 and 6', families);
  }
  const spec: PodRoutingSpec = {
    mark,
    table,
    priority: POD_ROUTING_RULE_PRIORITY,
    families: [...families] as Array<4 | 6>,
    enable: requireBoolean(call, 'options.enable', given.enable),
  };
  const binding = nativeBinding();
  await awaitNative(binding.configurePodRouting(netnsPath, spec));
}
