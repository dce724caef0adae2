// Sockets created inside another network namespace: listenInNetns, connectInNetns, netnsCookie.
// Each runs on a libuv pool thread, which enters the namespace only for socket(2) and always
// returns to its own namespace before doing anything else.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "addon.h"
#include "errors.h"
#include "promise-worker.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71  // include/uapi/asm-generic/socket.h, Linux 5.14+
#endif

namespace ferry {

namespace {

// Closes an fd on scope exit unless released.
class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  int get() const { return fd_; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Reset(int fd = -1) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

// socket(2) inside the network namespace at netns_path, from the calling (pool) thread.
//
// A socket belongs to the namespace current->nsproxy->net_ns had when it was created
// (sock_create -> __sock_create(current->nsproxy->net_ns, ...)) and keeps it for life, so only
// socket() needs the switch; bind/listen/connect/getsockopt happen after restoring. setns(2) with
// CLONE_NEWNET changes only the calling thread, which is why this runs on a pool thread and never
// on the main thread. The thread's own namespace is opened via /proc/thread-self (Linux 3.17+),
// not /proc/self, which names the main thread's.
//
// If switching back fails the pool thread would run unrelated later work (fs, dns, other
// workers) in a pod's namespace; there is no safe way to continue, so abort.
int SocketInNetns(const std::string& netns_path, int domain, int type, Failure& failure) {
  UniqueFd own(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (own.get() < 0) {
    failure = MakeFailure(errno, "open", "/proc/thread-self/ns/net");
    return -1;
  }
  UniqueFd target(open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (target.get() < 0) {
    failure = MakeFailure(errno, "open", netns_path);
    return -1;
  }
  if (setns(target.get(), CLONE_NEWNET) != 0) {
    // EINVAL here means the path is not a network namespace (setns(2)).
    failure = MakeFailure(errno, "setns", netns_path);
    return -1;
  }
  int fd = socket(domain, type, 0);
  int socket_errno = errno;
  if (setns(own.get(), CLONE_NEWNET) != 0) {
    int restore_errno = errno;
    fprintf(stderr,
            "ferry.node: FATAL: setns back to the thread's own network namespace failed after "
            "entering %s: %s; aborting rather than run later work in the wrong namespace\n",
            netns_path.c_str(), strerror(restore_errno));
    abort();
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

bool NetnsCookieOf(int fd, uint64_t& cookie, const std::string& where, Failure& failure) {
  socklen_t length = sizeof(cookie);
  if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &length) != 0) {
    // ENOPROTOOPT: kernel older than 5.14.
    failure = MakeFailure(errno, "getsockopt", "SO_NETNS_COOKIE on " + where);
    return false;
  }
  return true;
}

// An IPv4 or IPv6 socket address built from the validated options.
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
};

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

// Options readers: a TypeError naming options.<field> when the field is missing or mistyped.
double NumberField(const Napi::Object& options, const char* call, const char* field, double min, double max) {
  Napi::Value value = options.Get(field);
  if (!value.IsNumber()) ThrowArgument(options.Env(), call, std::string("options.") + field + " must be a number");
  double number = value.As<Napi::Number>().DoubleValue();
  if (!(number >= min && number <= max) || std::floor(number) != number) {
    ThrowArgument(options.Env(), call,
                  std::string("options.") + field + " must be an integer in " + std::to_string(static_cast<int64_t>(min)) +
                      ".." + std::to_string(static_cast<int64_t>(max)));
  }
  return number;
}

bool BoolField(const Napi::Object& options, const char* call, const char* field) {
  Napi::Value value = options.Get(field);
  if (!value.IsBoolean()) ThrowArgument(options.Env(), call, std::string("options.") + field + " must be a boolean");
  return value.As<Napi::Boolean>().Value();
}

std::string StringField(const Napi::Object& options, const char* call, const char* field) {
  Napi::Value value = options.Get(field);
  if (!value.IsString()) ThrowArgument(options.Env(), call, std::string("options.") + field + " must be a string");
  return value.As<Napi::String>().Utf8Value();
}

Napi::Object OptionsArg(const Napi::CallbackInfo& info, const char* call) {
  if (info.Length() < 2 || !info[1].IsObject()) ThrowArgument(info.Env(), call, "options must be an object");
  return info[1].As<Napi::Object>();
}

struct Endpoints {
  int family;
  std::string host;
  uint16_t port;
  uint32_t mark;
  SocketAddress address;
};

Endpoints ReadEndpoint(const Napi::Object& options, const char* call, double min_port) {
  Endpoints endpoint;
  endpoint.family = static_cast<int>(NumberField(options, call, "family", 4, 6));
  if (endpoint.family != 4 && endpoint.family != 6) ThrowArgument(options.Env(), call, "options.family must be 4 or 6");
  endpoint.host = StringField(options, call, "host");
  endpoint.port = static_cast<uint16_t>(NumberField(options, call, "port", min_port, 65535));
  endpoint.mark = static_cast<uint32_t>(NumberField(options, call, "mark", 0, 4294967295.0));
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

int64_t MonotonicMs() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
}

// connectInNetns: socket in the namespace, SO_MARK, non-blocking connect bounded by timeoutMs.
class ConnectWorker : public PromiseWorker {
 public:
  ConnectWorker(Napi::Env env, std::string netns_path, Endpoints endpoint, int timeout_ms)
      : PromiseWorker(env, "ferry.connectInNetns"),
        netns_path_(std::move(netns_path)),
        endpoint_(std::move(endpoint)),
        timeout_ms_(timeout_ms) {}

  ~ConnectWorker() override {
    if (fd_ >= 0) close(fd_);
  }

 protected:
  void Run() override {
    const std::string where = Endpoint(endpoint_.family, endpoint_.host, endpoint_.port) + " in " + netns_path_;
    UniqueFd fd(SocketInNetns(netns_path_, endpoint_.family == 6 ? AF_INET6 : AF_INET,
                              SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, failure_));
    if (fd.get() < 0) return;
    // The mark must be on the socket before connect() so the cgroup/connect hooks and routing
    // see it on the very first packet.
    if (endpoint_.mark != 0 &&
        !SetIntOption(fd.get(), SOL_SOCKET, SO_MARK, static_cast<int>(endpoint_.mark), "SO_MARK", where, failure_)) {
      return;
    }
    if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&endpoint_.address.storage), endpoint_.address.length) != 0) {
      if (errno != EINPROGRESS) {
        failure_ = MakeFailure(errno, "connect", where);
        return;
      }
      // connect(2): "EINPROGRESS ... select(2) or poll(2) for completion by selecting the socket
      // for writing ... use getsockopt(2) to read SO_ERROR".
      const int64_t deadline = MonotonicMs() + timeout_ms_;
      for (;;) {
        int64_t remaining = deadline - MonotonicMs();
        if (remaining < 0) remaining = 0;
        pollfd waiter{fd.get(), POLLOUT, 0};
        int ready = poll(&waiter, 1, static_cast<int>(remaining));
        if (ready < 0 && errno == EINTR) continue;
        if (ready < 0) {
          failure_ = MakeFailure(errno, "poll", where);
          return;
        }
        if (ready == 0) {
          failure_ = MakeFailure(ETIMEDOUT, "connect",
                                 where + ": no answer within " + std::to_string(timeout_ms_) + " ms");
          return;
        }
        break;
      }
      int socket_error = 0;
      socklen_t length = sizeof(socket_error);
      if (getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &socket_error, &length) != 0) {
        failure_ = MakeFailure(errno, "getsockopt", "SO_ERROR on " + where);
        return;
      }
      if (socket_error != 0) {
        failure_ = MakeFailure(socket_error, "connect", where);
        return;
      }
    }
    // The fd stays O_NONBLOCK, which is what libuv expects when new net.Socket({ fd }) adopts it.
    fd_ = fd.Release();
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Number fd = Napi::Number::New(env, fd_);
    fd_ = -1;
    return fd;
  }

 private:
  std::string netns_path_;
  Endpoints endpoint_;
  int timeout_ms_;
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
  Napi::Object options = OptionsArg(info, call);
  Endpoints endpoint = ReadEndpoint(options, call, 1);
  int backlog = static_cast<int>(NumberField(options, call, "backlog", 0, 65535));
  bool v6_only = BoolField(options, call, "v6Only");
  auto* worker = new ListenWorker(info.Env(), std::move(netns_path), std::move(endpoint), backlog, v6_only);
  Napi::Promise promise = worker->Promise();
  worker->Queue();  // the worker deletes itself after settling
  return promise;
}

Napi::Value ConnectInNetns(const Napi::CallbackInfo& info) {
  const char* call = "connectInNetns";
  std::string netns_path = StringArg(info, 0, call, "netnsPath");
  Napi::Object options = OptionsArg(info, call);
  Endpoints endpoint = ReadEndpoint(options, call, 1);
  int timeout_ms = static_cast<int>(NumberField(options, call, "timeoutMs", 1, 2147483647.0));
  auto* worker = new ConnectWorker(info.Env(), std::move(netns_path), std::move(endpoint), timeout_ms);
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
  exports.Set("connectInNetns", Napi::Function::New(env, ConnectInNetns, "connectInNetns"));
  exports.Set("netnsCookie", Napi::Function::New(env, NetnsCookie, "netnsCookie"));
}

}  // namespace ferry
