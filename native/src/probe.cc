// probe(): what this kernel and process can do, checked once at agent start so a missing feature
// fails with a message naming it instead of an obscure EINVAL later (ztunnel's verify_syscalls).
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <linux/fib_rules.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "addon.h"
#include "errors.h"
#include "rtnetlink.h"

#ifndef CAP_BPF
#define CAP_BPF 39  // include/uapi/linux/capability.h, Linux 5.8+
#endif

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71  // include/uapi/asm-generic/socket.h, Linux 5.14+
#endif

#ifndef IP_TRANSPARENT
#define IP_TRANSPARENT 19  // include/uapi/linux/in.h
#endif

namespace ferry {

namespace {

// Whether this kernel has policy-routing rules for family: an RTM_GETRULE dump answers
// EAFNOSUPPORT when the family registered no fib rules ops (fib_nl_dumprule), i.e. the kernel
// lacks CONFIG_IP_MULTIPLE_TABLES / CONFIG_IPV6_MULTIPLE_TABLES or IPv6 is off. Read-only.
int RuleDumpError(int family) {
  Failure failure;
  int fd = RouteNetlink::OpenSocket(failure);
  if (fd < 0) return failure.err;
  RouteNetlink netlink(fd);
  if (!netlink.Prepare(failure, "for the probe")) return failure.err;
  fib_rule_hdr header{};
  header.family = static_cast<uint8_t>(family);
  NetlinkRequest request(RTM_GETRULE, 0, &header, sizeof(header));
  NetlinkAnswer answer;
  if (!netlink.Dump(request, answer, failure, "RTM_GETRULE")) return failure.err;
  return answer.error;
}

struct Check {
  std::string name;
  bool ok;
  std::string detail;
};

struct Mount {
  std::string point;
  std::string type;
};

// /proc/self/mounts escapes space, tab, newline and backslash in paths as \ooo octal (proc(5)).
std::string Unescape(const std::string& field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      int value = 0;
      bool octal = true;
      for (size_t j = 1; j <= 3; ++j) {
        char c = field[i + j];
        if (c < '0' || c > '7') octal = false;
        value = value * 8 + (c - '0');
      }
      if (octal) {
        out.push_back(static_cast<char>(value));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

std::vector<Mount> ReadMounts() {
  std::vector<Mount> mounts;
  std::ifstream file("/proc/self/mounts");
  std::string device, point, type, rest;
  while (file >> device >> point >> type) {
    std::getline(file, rest);
    mounts.push_back({Unescape(point), type});
  }
  return mounts;
}

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

// The effective capability set, via capget(2) with the v3 header (two 32-bit words).
struct Capabilities {
  bool known = false;
  int error = 0;
  uint64_t effective = 0;
  bool Has(int cap) const { return known && ((effective >> cap) & 1) != 0; }
};

Capabilities ReadCapabilities() {
  Capabilities caps;
  __user_cap_header_struct header{};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;
  __user_cap_data_struct data[2]{};
  if (syscall(SYS_capget, &header, data) == 0) {
    caps.known = true;
    caps.effective = (static_cast<uint64_t>(data[1].effective) << 32) | data[0].effective;
  } else {
    caps.error = errno;
  }
  return caps;
}

int ReadIntFile(const char* path) {
  std::ifstream file(path);
  int value = -1;
  file >> value;
  return value;
}

// What a failed feature probe means. libbpf_probe_bpf_prog_type/map_type(3) return 1 supported,
// 0 "not supported" and <0 when the probe itself failed. A load refused for lack of privilege
// also comes back as 0, so without CAP_BPF/CAP_SYS_ADMIN a 0 says nothing about the kernel.
struct Prober {
  std::string release;
  bool privileged;

  Check Result(const char* name, int result, const std::string& what, const std::string& works,
               const char* min_kernel) const {
    if (result == 1) return {name, true, what + " " + works};
    if (result == 0 && !privileged) {
      return {name, false,
              what + " could not be probed: this process has neither CAP_BPF nor CAP_SYS_ADMIN (run as root; " +
                  "kernel " + min_kernel + " needed)"};
    }
    if (result == 0) {
      return {name, false, what + " not supported by kernel " + release + " (need " + min_kernel + ")"};
    }
    return {name, false,
            "could not probe " + what + ": " + ErrnoName(-result) + " " + ErrnoMessage(-result) + " (kernel " +
                min_kernel + " needed)"};
  }

  Check Program(const char* name, bpf_prog_type type, const char* what, const char* min_kernel) const {
    return Result(name, libbpf_probe_bpf_prog_type(type, nullptr), std::string(what) + " programs", "load",
                  min_kernel);
  }

  Check Map(const char* name, bpf_map_type type, const char* what, const char* min_kernel) const {
    return Result(name, libbpf_probe_bpf_map_type(type, nullptr), std::string(what) + " maps", "can be created",
                  min_kernel);
  }
};

Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  utsname uts{};
  uname(&uts);
  const std::string release = uts.release;
  const Capabilities caps = ReadCapabilities();
  const Prober prober{release, caps.Has(CAP_BPF) || caps.Has(CAP_SYS_ADMIN)};
  std::vector<Check> checks;

  // bpf(2) at all: a socket filter is the oldest, least privileged program type, so failing here
  // means the syscall is off or denied, not that a feature is missing.
  {
    int result = libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SOCKET_FILTER, nullptr);
    if (result == 1) {
      checks.push_back({"bpf_syscall", true, "bpf() loads programs"});
    } else if (!prober.privileged) {
      checks.push_back({"bpf_syscall", false,
                        "bpf() denied to this process: no CAP_BPF or CAP_SYS_ADMIN and "
                        "kernel.unprivileged_bpf_disabled=" +
                            std::to_string(ReadIntFile("/proc/sys/kernel/unprivileged_bpf_disabled")) +
                            " (run as root, or with CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN)"});
    } else if (result == 0) {
      checks.push_back({"bpf_syscall", false, "bpf() cannot load a socket filter on kernel " + release +
                                                  " (built without CONFIG_BPF_SYSCALL, or blocked by seccomp/LSM)"});
    } else {
      checks.push_back({"bpf_syscall", false,
                        "bpf() unusable: " + ErrnoName(-result) + " " + ErrnoMessage(-result) +
                            " (kernel built without CONFIG_BPF_SYSCALL, or blocked by seccomp/LSM)"});
    }
  }

  std::vector<Mount> mounts = ReadMounts();
  {
    std::vector<std::string> points;
    for (const auto& mount : mounts) {
      if (mount.type == "cgroup2") points.push_back(mount.point);
    }
    if (!points.empty()) {
      checks.push_back({"cgroup2", true, "cgroup2 mounted at " + Join(points)});
    } else {
      checks.push_back({"cgroup2", false,
                        "no cgroup2 filesystem mounted: cgroup/connect and sock_ops programs attach to cgroup v2 "
                        "directories (mount -t cgroup2 none /sys/fs/cgroup/unified)"});
    }
  }
  {
    bool at_default = false;
    std::vector<std::string> elsewhere;
    for (const auto& mount : mounts) {
      if (mount.type != "bpf") continue;
      if (mount.point == "/sys/fs/bpf") at_default = true;
      else elsewhere.push_back(mount.point);
    }
    if (at_default) {
      checks.push_back({"bpffs", true, "bpf filesystem mounted at /sys/fs/bpf"});
    } else {
      std::string also = elsewhere.empty() ? "" : " (found bpffs only at " + Join(elsewhere) + ")";
      checks.push_back({"bpffs", false,
                        "no bpf filesystem at /sys/fs/bpf" + also +
                            ": pinned maps and links live there (mount -t bpf bpf /sys/fs/bpf)"});
    }
  }
  if (access("/sys/kernel/btf/vmlinux", R_OK) == 0) {
    checks.push_back({"btf", true, "kernel BTF at /sys/kernel/btf/vmlinux"});
  } else {
    int err = errno;
    checks.push_back({"btf", false,
                      "/sys/kernel/btf/vmlinux: " + ErrnoMessage(err) +
                          " (kernel built without CONFIG_DEBUG_INFO_BTF; CO-RE programs need it, kernel 5.4+)"});
  }

  checks.push_back(prober.Program("prog_cgroup_sock_addr", BPF_PROG_TYPE_CGROUP_SOCK_ADDR, "cgroup/connect (sock_addr)",
                                  "4.17+"));
  checks.push_back(prober.Program("prog_sk_lookup", BPF_PROG_TYPE_SK_LOOKUP, "sk_lookup", "5.9+"));
  checks.push_back(prober.Program("prog_sock_ops", BPF_PROG_TYPE_SOCK_OPS, "sock_ops", "4.13+"));
  checks.push_back(prober.Map("map_sockhash", BPF_MAP_TYPE_SOCKHASH, "SOCKHASH", "4.18+"));

  {
    auto cap_check = [&](const char* name, int cap, const char* cap_name, const char* why) {
      if (!caps.known) {
        checks.push_back({name, false, std::string("capget: ") + ErrnoMessage(caps.error)});
      } else if (caps.Has(cap)) {
        checks.push_back({name, true, std::string(cap_name) + " in the effective set"});
      } else {
        checks.push_back({name, false, std::string(cap_name) + " missing from the effective set: " + why});
      }
    };
    // Before 5.8 there is no CAP_BPF and CAP_SYS_ADMIN alone grants bpf(); don't fail for a
    // capability the kernel cannot grant.
    int last_cap = ReadIntFile("/proc/sys/kernel/cap_last_cap");
    if (caps.known && last_cap >= 0 && last_cap < CAP_BPF) {
      bool ok = caps.Has(CAP_SYS_ADMIN);
      checks.push_back({"cap_bpf", ok,
                        ok ? "kernel " + release + " predates CAP_BPF (5.8); CAP_SYS_ADMIN grants bpf()"
                           : "kernel " + release + " predates CAP_BPF (5.8) and CAP_SYS_ADMIN is missing: bpf() "
                                                   "needs it"});
    } else {
      cap_check("cap_bpf", CAP_BPF, "CAP_BPF", "needed to load programs and create maps (kernel 5.8+)");
    }
    cap_check("cap_net_admin", CAP_NET_ADMIN, "CAP_NET_ADMIN",
              "needed to attach cgroup/sk_lookup programs and to set SO_MARK");
    cap_check("cap_sys_admin", CAP_SYS_ADMIN, "CAP_SYS_ADMIN",
              "needed for setns(2) into pod network namespaces and for bpf_link pinning");
  }

  // SO_NETNS_COOKIE identifies a pod's namespace in our maps; listenInNetns reads it.
  {
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    uint64_t cookie = 0;
    socklen_t length = sizeof(cookie);
    if (fd < 0) {
      checks.push_back({"so_netns_cookie", false, "socket(AF_UNIX): " + ErrnoMessage(errno)});
    } else if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &length) == 0) {
      checks.push_back({"so_netns_cookie", true, "SO_NETNS_COOKIE readable"});
    } else {
      checks.push_back({"so_netns_cookie", false,
                        "getsockopt(SO_NETNS_COOKIE): " + ErrnoMessage(errno) + " on kernel " + release +
                            " (need 5.14+)"});
    }
    if (fd >= 0) close(fd);
  }

  // IP_TRANSPARENT: the proxy binds its sockets in pods to the real client's address
  // (socketInNetns transparent). The kernel allows it with CAP_NET_RAW or CAP_NET_ADMIN
  // (ip(7)); trying it on a throwaway socket answers for this process exactly.
  {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int on = 1;
    if (fd < 0) {
      checks.push_back({"ip_transparent", false, "socket(AF_INET): " + ErrnoMessage(errno)});
    } else if (setsockopt(fd, SOL_IP, IP_TRANSPARENT, &on, sizeof(on)) == 0) {
      checks.push_back({"ip_transparent", true, "IP_TRANSPARENT can be set (binding to the client's address)"});
    } else {
      int err = errno;
      checks.push_back({"ip_transparent", false,
                        "setsockopt(IP_TRANSPARENT): " + ErrnoName(err) + " " + ErrnoMessage(err) +
                            " (needs CAP_NET_ADMIN or CAP_NET_RAW; the app would see the proxy, not the client)"});
    }
    if (fd >= 0) close(fd);
  }

  // Policy routing: configurePodRouting's fwmark rule that sends replies to the proxy's
  // transparent sockets. Required for IPv4; IPv6 is reported, since a node may run without it.
  {
    int v4 = RuleDumpError(AF_INET);
    int v6 = RuleDumpError(AF_INET6);
    auto state = [](int err) { return err == 0 ? std::string("available") : ErrnoName(err) + " " + ErrnoMessage(err); };
    std::string detail = "policy routing rules: IPv4 " + state(v4) + ", IPv6 " + state(v6);
    if (v4 != 0 || v6 != 0) {
      detail += " (EAFNOSUPPORT means kernel " + release +
                " was built without CONFIG_IP_MULTIPLE_TABLES / CONFIG_IPV6_MULTIPLE_TABLES, or IPv6 is off; pods of "
                "that family cannot have transparent delivery)";
    }
    checks.push_back({"policy_routing", v4 == 0, detail});
  }

  Napi::Array list = Napi::Array::New(env, checks.size());
  for (size_t i = 0; i < checks.size(); ++i) {
    Napi::Object check = Napi::Object::New(env);
    check.Set("name", checks[i].name);
    check.Set("ok", checks[i].ok);
    check.Set("detail", checks[i].detail);
    list.Set(static_cast<uint32_t>(i), check);
  }
  Napi::Object report = Napi::Object::New(env);
  report.Set("kernelRelease", release);
  report.Set("checks", list);
  return report;
}

}  // namespace

void InitProbe(Napi::Env env, Napi::Object exports) {
  exports.Set("probe", Napi::Function::New(env, Probe, "probe"));
}

}  // namespace ferry
