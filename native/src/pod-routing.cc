// configurePodRouting: the transparent-proxy reply path inside a pod's network namespace, over
// rtnetlink — `fwmark MARK/0xffffffff lookup TABLE`, `local default dev lo table TABLE` per family,
// and net.ipv4.tcp_fwmark_accept=1 and fwmark_reflect=1 — so the app's replies to a proxy socket bound to a non-local
// client address (IP_TRANSPARENT) are delivered back to that socket instead of leaving the pod.
#include <fcntl.h>
#include <linux/fib_rules.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "addon.h"
#include "errors.h"
#include "netns.h"
#include "promise-worker.h"
#include "rtnetlink.h"

namespace ferry {

namespace {

// ip-sysctl.txt, tcp_fwmark_accept: "If set, incoming connections to listening sockets that do
// not have a socket mark will set the mark of the accepting socket to the fwmark of the incoming
// SYN packet" — so the app's accepted socket, and every reply it sends, carries the proxy's mark
// and meets the rule below. The ipv4 sysctl governs IPv6 TCP too (inet_request_mark()).
constexpr const char* kFwmarkAcceptSysctl = "/proc/sys/net/ipv4/tcp_fwmark_accept";
// ip-sysctl.txt, fwmark_reflect: "Controls the fwmark of kernel-generated IPv4 reply packets that
// are not associated with a socket for example, TCP RSTs or ICMP echo replies). If unset, these
// packets have a fwmark of zero. If set, they have the fwmark of the packet they are replying to."
// Without it the RST for a port the app does not listen on is unmarked, routed out of the pod to
// the client's address, and the proxy's connect waits for its timeout instead of seeing ECONNREFUSED.
constexpr const char* kFwmarkReflectSysctls[] = {"/proc/sys/net/ipv4/fwmark_reflect", "/proc/sys/net/ipv6/fwmark_reflect"};

struct RoutingSpec {
  uint32_t mark = 0;
  uint32_t table = 0;
  uint32_t priority = 0;
  std::vector<int> families;  // 4 and/or 6
  bool enable = true;
};

// rtmsg.rtm_table and fib_rule_hdr.table are 8 bits; a larger table id goes in RTA_TABLE /
// FRA_TABLE alone with RT_TABLE_UNSPEC in the header (what iproute2 sends).
uint8_t HeaderTable(uint32_t table) { return table < 256 ? static_cast<uint8_t>(table) : static_cast<uint8_t>(RT_TABLE_UNSPEC); }

std::string Hex(uint32_t value) {
  char text[16];
  snprintf(text, sizeof(text), "0x%x", value);
  return text;
}

class PodRoutingWorker : public PromiseWorker {
 public:
  PodRoutingWorker(Napi::Env env, std::string netns_path, RoutingSpec spec)
      : PromiseWorker(env, "ferry.configurePodRouting"), netns_path_(std::move(netns_path)), spec_(std::move(spec)) {}

 protected:
  void Run() override {
    // Inside the namespace only what must be there: the NETLINK_ROUTE socket (it talks to the
    // namespace it was made in, like any socket), lo's ifindex, and the sysctl, because
    // /proc/sys/net resolves to the network namespace of the thread that opens it.
    Failure inside;
    int netlink_fd = -1;
    unsigned lo_index = 0;
    int lo_errno = 0;
    if (!RunInNetns(netns_path_, failure_, [&] {
          netlink_fd = RouteNetlink::OpenSocket(inside);
          if (netlink_fd < 0) return;
          lo_index = if_nametoindex("lo");
          lo_errno = errno;
          if (spec_.enable) WriteSysctl(inside);
        })) {
      return;
    }
    RouteNetlink netlink(netlink_fd);  // owns the fd from here on, even on failure
    if (inside.failed()) {
      failure_ = inside;
      if (failure_.syscall == "socket") failure_.detail += " in " + netns_path_;
      return;
    }
    if (lo_index == 0) {
      failure_ = MakeFailure(lo_errno, "if_nametoindex", "lo in " + netns_path_);
      return;
    }
    if (!netlink.Prepare(failure_, "in " + netns_path_)) return;
    for (int family : spec_.families) {
      if (spec_.enable) {
        // The route first, so the rule never points marked packets at an empty table.
        if (!Route(netlink, family, lo_index) || !Rule(netlink, family)) return;
      } else {
        if (!Rule(netlink, family) || !Route(netlink, family, lo_index)) return;
      }
    }
  }

  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }

 private:
  void WriteSysctl(Failure& failure) {
    if (!WriteOne(kFwmarkAcceptSysctl, failure)) return;
    for (int family : spec_.families) {
      if (!WriteOne(kFwmarkReflectSysctls[family == 6 ? 1 : 0], failure)) return;
    }
  }

  bool WriteOne(const char* sysctl, Failure& failure) {
    const std::string where = std::string(sysctl) + " in " + netns_path_;
    UniqueFd fd(open(sysctl, O_WRONLY | O_CLOEXEC));
    if (fd.get() < 0) {
      failure = MakeFailure(errno, "open", where);
      return false;
    }
    if (write(fd.get(), "1\n", 2) != 2) {
      failure = MakeFailure(errno, "write", where);
      return false;
    }
    return true;
  }

  // EEXIST on enable and ENOENT/ESRCH on disable mean the namespace is already as asked.
  bool Settle(RouteNetlink& netlink, NetlinkRequest& request, const char* message, const std::string& what) {
    const std::string where = what + " in " + netns_path_;
    NetlinkAnswer answer;
    if (!netlink.Transact(request, answer, failure_, std::string(message) + " " + where)) return false;
    const bool done = answer.error == 0 || (spec_.enable && answer.error == EEXIST) ||
                      (!spec_.enable && (answer.error == ENOENT || answer.error == ESRCH));
    if (done) return true;
    failure_ = MakeFailure(answer.error, message, answer.message.empty() ? where : where + ": " + answer.message);
    return false;
  }

  // `fwmark MARK/0xffffffff lookup TABLE priority PRIORITY` (fib_rules: FRA_* attributes); the
  // exact mask keeps every other mark bit, and every unmarked packet, out of the rule.
  bool Rule(RouteNetlink& netlink, int family) {
    fib_rule_hdr header{};
    header.family = family == 6 ? AF_INET6 : AF_INET;
    header.table = HeaderTable(spec_.table);
    header.action = FR_ACT_TO_TBL;
    // NLM_F_EXCL: the kernel answers EEXIST for an identical rule instead of adding a duplicate.
    const uint16_t type = spec_.enable ? RTM_NEWRULE : RTM_DELRULE;
    NetlinkRequest request(type, spec_.enable ? NLM_F_CREATE | NLM_F_EXCL : 0, &header, sizeof(header));
    request.AddU32(FRA_PRIORITY, spec_.priority);
    request.AddU32(FRA_FWMARK, spec_.mark);
    request.AddU32(FRA_FWMASK, 0xffffffff);
    request.AddU32(FRA_TABLE, spec_.table);
    const std::string what = "IPv" + std::to_string(family) + " rule priority " + std::to_string(spec_.priority) +
                             " fwmark " + Hex(spec_.mark) + "/0xffffffff lookup " + std::to_string(spec_.table);
    return Settle(netlink, request, spec_.enable ? "RTM_NEWRULE" : "RTM_DELRULE", what);
  }

  // `local default dev lo table TABLE` (RTN_LOCAL, RT_SCOPE_HOST): every destination counts as
  // local to a packet that reaches this table, so it is delivered up the stack to whichever socket
  // owns its 4-tuple — the proxy's transparent socket — rather than routed out of the pod.
  bool Route(RouteNetlink& netlink, int family, unsigned lo_index) {
    rtmsg header{};
    header.rtm_family = family == 6 ? AF_INET6 : AF_INET;
    header.rtm_dst_len = 0;  // 0.0.0.0/0 or ::/0: no RTA_DST
    header.rtm_table = HeaderTable(spec_.table);
    header.rtm_type = RTN_LOCAL;
    if (spec_.enable) {
      header.rtm_protocol = RTPROT_STATIC;
      header.rtm_scope = RT_SCOPE_HOST;
    } else {
      // Deletion matches on what is given; RT_SCOPE_NOWHERE and protocol 0 mean "any"
      // (fib_table_delete), as iproute2 sends them.
      header.rtm_protocol = 0;
      header.rtm_scope = RT_SCOPE_NOWHERE;
    }
    const uint16_t type = spec_.enable ? RTM_NEWROUTE : RTM_DELROUTE;
    NetlinkRequest request(type, spec_.enable ? NLM_F_CREATE | NLM_F_EXCL : 0, &header, sizeof(header));
    request.AddU32(RTA_TABLE, spec_.table);
    request.AddU32(RTA_OIF, lo_index);
    const std::string what = std::string(family == 6 ? "IPv6 route local ::/0" : "IPv4 route local 0.0.0.0/0") +
                             " dev lo table " + std::to_string(spec_.table);
    return Settle(netlink, request, spec_.enable ? "RTM_NEWROUTE" : "RTM_DELROUTE", what);
  }

  std::string netns_path_;
  RoutingSpec spec_;
};

Napi::Value ConfigurePodRouting(const Napi::CallbackInfo& info) {
  const char* call = "configurePodRouting";
  std::string netns_path = StringArg(info, 0, call, "netnsPath");
  Napi::Object options = OptionsArg(info, 1, call);
  RoutingSpec spec;
  spec.mark = static_cast<uint32_t>(IntegerField(options, call, "mark", 1, 4294967295.0));
  spec.table = static_cast<uint32_t>(IntegerField(options, call, "table", 1, 4294967295.0));
  // 252..255 are compat, default, main and local (rtnetlink.h rt_class_t): writing a local
  // default route into one of them would capture every packet of the pod.
  if (spec.table >= RT_TABLE_COMPAT && spec.table <= RT_TABLE_LOCAL) {
    ThrowArgument(info.Env(), call, "options.table must not be a reserved table (252 compat, 253 default, 254 main, 255 local)");
  }
  spec.priority = static_cast<uint32_t>(IntegerField(options, call, "priority", 1, 4294967295.0));
  spec.enable = BoolField(options, call, "enable");
  Napi::Value families = options.Get("families");
  if (!families.IsArray()) ThrowArgument(info.Env(), call, "options.families must be an array of 4 and/or 6");
  Napi::Array list = families.As<Napi::Array>();
  for (uint32_t i = 0; i < list.Length(); ++i) {
    Napi::Value family = list.Get(i);
    double value = family.IsNumber() ? family.As<Napi::Number>().DoubleValue() : 0;
    if (value != 4 && value != 6) ThrowArgument(info.Env(), call, "options.families must contain only 4 and 6");
    spec.families.push_back(static_cast<int>(value));
  }
  auto* worker = new PodRoutingWorker(info.Env(), std::move(netns_path), std::move(spec));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace

void InitPodRouting(Napi::Env env, Napi::Object exports) {
  exports.Set("configurePodRouting", Napi::Function::New(env, ConfigurePodRouting, "configurePodRouting"));
}

}  // namespace ferry
