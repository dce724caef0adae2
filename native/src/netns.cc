// Sockets created inside another network namespace: listenInNetns, socketInNetns, netnsCookie.
// Each runs on a libuv pool thread, which enters the namespace only for socket(2) and always
// returns to its own namespace before doing anything else. Nothing here waits on the network:
// a dial is socketInNetns here and connect(2) by libuv on the event loop (src/native).
#include "netns.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "addon.h"
#include "errors.h"
#include "promise-worker.h"

// ip(7) / ipv6(7) option numbers, for libc headers that predate them.
#ifndef IP_TRANSPARENT
#define IP_TRANSPARENT 19  // include/uapi/linux/in.h, Linux 2.6.28+
#endif
#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24  // include/uapi/linux/in.h, Linux 4.2+
#endif
#ifndef IPV6_TRANSPARENT
#define IPV6_TRANSPARENT 75  // include/uapi/linux/in6.h, Linux 2.6.37+
#endif

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71  // include/uapi/asm-generic/socket.h, Linux 5.14+
#endif

namespace ferry {

// A socket belongs to the namespace current->nsproxy->net_ns had when it was created
// (sock_create -> __sock_create(current->nsproxy->net_ns, ...)) and keeps it for life, so only
// socket() needs the switch; bind/listen/connect/getsockopt happen after restoring. setns(2) with
// CLONE_NEWNET changes only the calling thread, which is why this runs on a pool thread and never
// on the main thread. The thread's own namespace is opened via /proc/thread-self (Linux 3.17+),
// not /proc/self, which names the main thread's.
bool RunInNetns(const std::string& netns_path, Failure& failure, const std::function<void()>& body) {
  UniqueFd own(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (own.get() < 0) {
    failure = MakeFailure(errno, "open", "/proc/thread-self/ns/net");
    return false;
  }
  UniqueFd target(open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (target.get() < 0) {
    failure = MakeFailure(errno, "open", netns_path);
    return false;
  }
  if (setns(target.get(), CLONE_NEWNET) != 0) {
    // EINVAL here means the path is not a network namespace (setns(2)).
    failure = MakeFailure(errno, "setns", netns_path);
    return false;
  }
  // body must not throw past the restore below: catch, restore, rethrow.
  std::exception_ptr thrown;
  try {
    body();
  } catch (...) {
    thrown = std::current_exception();
  }
  if (setns(own.get(), CLONE_NEWNET) != 0) {
    int restore_errno = errno;
    fprintf(stderr,
            "ferry.node: FATAL: setns back to the thread's own network namespace failed after "
            "entering %s: %s; aborting rather than run later work in the wrong namespace\n",
            netns_path.c_str(), strerror(restore_errno));
    abort();
  }
  if (thrown) std::rethrow_exception(thrown);
  return true;
}

int SocketInNetns(const std::string& netns_path, int domain, int type, Failure& failure) {
  int fd = -1;
  int socket_errno = 0;
  if (!RunInNetns(netns_path, failure, [&] {
        fd = socket(domain, type, 0);
        socket_errno = errno;
      })) {
    return -1;
  }
  if (fd < 0) {
    failure = MakeFailure(socket_errno, "socket", "in " + netns_path);
    return -1;
  }
  return fd;
}

bool SetIntOption(int fd, int level, int name, int value, const char* option, const std::string& where,
                  Failure& failure) {
  if (setsockopt(fd, level, name, &value, sizeof(value)) != 0) {
    failure = MakeFailure(errno, "setsockopt", std::string(option) + " on " + where);
    return false;
  }
  return true;
}

bool ParseAddress(int family, const std::string& host, uint16_t port, SocketAddress& address) {
  if (family == 4) {
    auto* in = reinterpret_cast<sockaddr_in*>(&address.storage);
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    address.length = sizeof(sockaddr_in);
    return inet_pton(AF_INET, host.c_str(), &in->sin_addr) == 1;
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&address.storage);
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(port);
  address.length = sizeof(sockaddr_in6);
  return inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) == 1;
}

std::string Endpoint(int family, const std::string& host, uint16_t port) {
  return family == 6 ? "[" + host + "]:" + std::to_string(port) : host + ":" + std::to_string(port);
}

namespace {

bool NetnsCookieOf(int fd, uint64_t& cookie, const std::string& where, Failure& failure) {
  socklen_t length = sizeof(cookie);
  if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &length) != 0) {
    // ENOPROTOOPT: kernel older than 5.14.
    failure = MakeFailure(errno, "getsockopt", "SO_NETNS_COOKIE on " + where);
    return false;
  }
  return true;
}

struct Endpoints {
  int family;
  std::string host;
  uint16_t port;
  uint32_t mark;
  SocketAddress address;
};

int ReadFamily(const Napi::Object& options, const char* call) {
  int family = static_cast<int>(IntegerField(options, call, "family", 4, 6));
  if (family != 4 && family != 6) ThrowArgument(options.Env(), call, "options.family must be 4 or 6");
  return family;
}

Endpoints ReadEndpoint(const Napi::Object& options, const char* call, double min_port) {
  Endpoints endpoint;
  endpoint.family = ReadFamily(options, call);
  endpoint.host = StringField(options, call, "host");
  endpoint.port = static_cast<uint16_t>(IntegerField(options, call, "port", min_port, 65535));
  endpoint.mark = static_cast<uint32_t>(IntegerField(options, call, "mark", 0, 4294967295.0));
  if (!ParseAddress(endpoint.family, endpoint.host, endpoint.port, endpoint.address)) {
    ThrowArgument(options.Env(), call,
                  "options.host '" + endpoint.host + "' is not an IPv" + std::to_string(endpoint.family) + " address");
  }
  return endpoint;
}

// listenInNetns: socket in the namespace, then SO_REUSEADDR, SO_MARK, IPV6_V6ONLY, bind, listen.
class ListenWorker : public PromiseWorker {
 public:
  ListenWorker(Napi::Env env, std::string netns_path, Endpoints endpoint, int backlog, bool v6_only)
      : PromiseWorker(env, "ferry.listenInNetns"),
        netns_path_(std::move(netns_path)),
        endpoint_(std::move(endpoint)),
        backlog_(backlog),
        v6_only_(v6_only) {}

  // An fd not handed to JS (the Promise could not resolve) must not leak.
  ~ListenWorker() override {
    if (fd_ >= 0) close(fd_);
  }

 protected:
  void Run() override {
    const std::string where = Endpoint(endpoint_.family, endpoint_.host, endpoint_.port) + " in " + netns_path_;
    // Non-blocking and close-on-exec from birth: Node adopts the fd into libuv, which expects
    // O_NONBLOCK, and a child process must never inherit a pod's listener.
    UniqueFd fd(SocketInNetns(netns_path_, endpoint_.family == 6 ? AF_INET6 : AF_INET,
                              SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, failure_));
    if (fd.get() < 0) return;
    // SO_REUSEADDR: rebinding a port with TIME_WAIT leftovers after an agent restart (socket(7)).
    if (!SetIntOption(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR", where, failure_)) return;
    // SO_MARK needs CAP_NET_ADMIN (or CAP_NET_RAW since 5.17); only set when asked.
    if (endpoint_.mark != 0 &&
        !SetIntOption(fd.get(), SOL_SOCKET, SO_MARK, static_cast<int>(endpoint_.mark), "SO_MARK", where, failure_)) {
      return;
    }
    // Set IPV6_V6ONLY explicitly both ways: its default is the namespace's
    // net.ipv6.bindv6only sysctl, which we do not control inside a pod (ipv6(7)).
    if (endpoint_.family == 6 &&
        !SetIntOption(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, v6_only_ ? 1 : 0, "IPV6_V6ONLY", where, failure_)) {
      return;
    }
    if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&endpoint_.address.storage), endpoint_.address.length) != 0) {
      failure_ = MakeFailure(errno, "bind", where);
      return;
    }
    if (listen(fd.get(), backlog_) != 0) {
      failure_ = MakeFailure(errno, "listen", where);
      return;
    }
    if (!NetnsCookieOf(fd.get(), netns_cookie_, where, failure_)) return;
    fd_ = fd.Release();
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object result = Napi::Object::New(env);
    result.Set("fd", Napi::Number::New(env, fd_));
    result.Set("netnsCookie", Napi::BigInt::New(env, netns_cookie_));
    fd_ = -1;  // ownership passed to JS
    return result;
  }

 private:
  std::string netns_path_;
  Endpoints endpoint_;
  int backlog_;
  bool v6_only_;
  int fd_ = -1;
  uint64_t netns_cookie_ = 0;
};

// What socketInNetns makes: a TCP socket of family, marked, optionally transparent and bound.
struct SocketSpec {
  int family = 4;
  uint32_t mark = 0;
  bool transparent = false;
  bool bind = false;
  std::string bind_host;
  uint16_t bind_port = 0;  // 0: the kernel picks one at connect (IP_BIND_ADDRESS_NO_PORT)
  SocketAddress bind_address;
};

// socketInNetns: an unconnected TCP socket made in the namespace, for the caller to adopt into
// libuv (new net.Socket({ fd })) and connect there, so no pool thread waits on the network.
class SocketWorker : public PromiseWorker {
 public:
  SocketWorker(Napi::Env env, std::string netns_path, SocketSpec spec)
      : PromiseWorker(env, "ferry.socketInNetns"), netns_path_(std::move(netns_path)), spec_(std::move(spec)) {}

  ~SocketWorker() override {
    if (fd_ >= 0) close(fd_);
  }

 protected:
  void Run() override {
    std::string where = "IPv" + std::to_string(spec_.family) + " socket in " + netns_path_;
    if (spec_.bind) where += " bound to " + Endpoint(spec_.family, spec_.bind_host, spec_.bind_port);
    // O_NONBLOCK from birth: libuv's connect expects it and completes the connect on the event
    // loop (EINPROGRESS, then writable; connect(2)).
    UniqueFd fd(SocketInNetns(netns_path_, spec_.family == 6 ? AF_INET6 : AF_INET,
                              SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, failure_));
    if (fd.get() < 0) return;
    // The mark must be on the socket before connect() so the cgroup/connect hooks and routing
    // see it on the very first packet.
    if (spec_.mark != 0 &&
        !SetIntOption(fd.get(), SOL_SOCKET, SO_MARK, static_cast<int>(spec_.mark), "SO_MARK", where, failure_)) {
      return;
    }
    // IP_TRANSPARENT / IPV6_TRANSPARENT (ip(7), ipv6(7); Documentation/networking/tproxy.rst):
    // lets bind() take an address that is not local to the namespace, so the app sees the real
    // client as its peer. Needs CAP_NET_RAW or CAP_NET_ADMIN in the namespace's user namespace.
    if (spec_.transparent) {
      bool set = spec_.family == 6
                     ? SetIntOption(fd.get(), SOL_IPV6, IPV6_TRANSPARENT, 1, "IPV6_TRANSPARENT", where, failure_)
                     : SetIntOption(fd.get(), SOL_IP, IP_TRANSPARENT, 1, "IP_TRANSPARENT", where, failure_);
      if (!set) return;
    }
    if (spec_.bind) {
      // IP_BIND_ADDRESS_NO_PORT (ip(7)): bind(addr, 0) reserves no port; connect() picks one that
      // only has to be unique for the 4-tuple, so one source address is not limited to one
      // ephemeral range across all destinations. An IPv6 socket takes this SOL_IP option too
      // (ipv6_setsockopt hands SOL_IP to ip_setsockopt).
      // An explicit port is the caller's choice of 4-tuple; SO_REUSEADDR lets it take a port that
      // only TIME_WAIT sockets still hold (socket(7)), the connect then fails if the tuple is in use.
      if (spec_.bind_port == 0
              ? !SetIntOption(fd.get(), SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1, "IP_BIND_ADDRESS_NO_PORT", where, failure_)
              : !SetIntOption(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR", where, failure_)) {
        return;
      }
      const SocketAddress& address = spec_.bind_address;
      if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&address.storage), address.length) != 0) {
        // EADDRNOTAVAIL: a non-local address without transparent (or net.ipv4.ip_nonlocal_bind).
        failure_ = MakeFailure(errno, "bind", where);
        return;
      }
    }
    fd_ = fd.Release();
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Number fd = Napi::Number::New(env, fd_);
    fd_ = -1;  // ownership passed to JS
    return fd;
  }

 private:
  std::string netns_path_;
  SocketSpec spec_;
  int fd_ = -1;
};

// netnsCookie: a throwaway AF_UNIX socket in the namespace answers SO_NETNS_COOKIE. Any family
// works (the cookie is sock_net(sk)'s); AF_UNIX touches no IP state.
class NetnsCookieWorker : public PromiseWorker {
 public:
  NetnsCookieWorker(Napi::Env env, std::string netns_path)
      : PromiseWorker(env, "ferry.netnsCookie"), netns_path_(std::move(netns_path)) {}

 protected:
  void Run() override {
    UniqueFd fd(SocketInNetns(netns_path_, AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, failure_));
    if (fd.get() < 0) return;
    NetnsCookieOf(fd.get(), cookie_, netns_path_, failure_);
  }

  Napi::Value Result(Napi::Env env) override { return Napi::BigInt::New(env, cookie_); }

 private:
  std::string netns_path_;
  uint64_t cookie_ = 0;
};

Napi::Value ListenInNetns(const Napi::CallbackInfo& info) {
  const char* call = "listenInNetns";
  std::string netns_path = StringArg(info, 0, call, "netnsPath");
  Napi::Object options = OptionsArg(info, 1, call);
  Endpoints endpoint = ReadEndpoint(options, call, 1);
  int backlog = static_cast<int>(IntegerField(options, call, "backlog", 0, 65535));
  bool v6_only = BoolField(options, call, "v6Only");
  auto* worker = new ListenWorker(info.Env(), std::move(netns_path), std::move(endpoint), backlog, v6_only);
  Napi::Promise promise = worker->Promise();
  worker->Queue();  // the worker deletes itself after settling
  return promise;
}

Napi::Value SocketInNetnsBinding(const Napi::CallbackInfo& info) {
  const char* call = "socketInNetns";
  std::string netns_path = StringArg(info, 0, call, "netnsPath");
  Napi::Object options = OptionsArg(info, 1, call);
  SocketSpec spec;
  spec.family = ReadFamily(options, call);
  spec.mark = static_cast<uint32_t>(IntegerField(options, call, "mark", 0, 4294967295.0));
  spec.transparent = BoolField(options, call, "transparent");
  spec.bind = OptionalStringField(options, call, "bindHost", spec.bind_host);
  spec.bind_port = static_cast<uint16_t>(IntegerField(options, call, "bindPort", 0, 65535));
  if (spec.bind && !ParseAddress(spec.family, spec.bind_host, spec.bind_port, spec.bind_address)) {
    ThrowArgument(options.Env(), call,
                  "options.bindHost '" + spec.bind_host + "' is not an IPv" + std::to_string(spec.family) + " address");
  }
  auto* worker = new SocketWorker(info.Env(), std::move(netns_path), std::move(spec));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Value NetnsCookie(const Napi::CallbackInfo& info) {
  std::string netns_path = StringArg(info, 0, "netnsCookie", "netnsPath");
  auto* worker = new NetnsCookieWorker(info.Env(), std::move(netns_path));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace

void InitNetns(Napi::Env env, Napi::Object exports) {
  exports.Set("listenInNetns", Napi::Function::New(env, ListenInNetns, "listenInNetns"));
  exports.Set("socketInNetns", Napi::Function::New(env, SocketInNetnsBinding, "socketInNetns"));
  exports.Set("netnsCookie", Napi::Function::New(env, NetnsCookie, "netnsCookie"));
}

}  // namespace ferry
