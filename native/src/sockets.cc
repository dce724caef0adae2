// Fast, non-blocking socket calls on fds Node already owns: SO_COOKIE, SO_MARK, keepalive, user
// timeout and linger (tuneSocket / socketOptions), dup(2) and close(2).
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>

#include "addon.h"
#include "errors.h"

#ifndef SO_COOKIE
#define SO_COOKIE 57  // include/uapi/asm-generic/socket.h, Linux 4.12+
#endif

namespace ferry {

namespace {

// getsockopt(SO_COOKIE): the kernel-unique, never-reused 64-bit id of the socket (socket(7)),
// the same value BPF programs see via bpf_get_socket_cookie().
Napi::Value SocketCookie(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "getsockopt", "fd");
  uint64_t cookie = 0;
  socklen_t length = sizeof(cookie);
  if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &length) != 0) {
    Throw(env, errno, "getsockopt", "SO_COOKIE of fd " + std::to_string(fd));
  }
  return Napi::BigInt::New(env, cookie);
}

// getsockopt(SO_MARK): the fwmark routing and our BPF programs use to recognise agent sockets.
Napi::Value SocketMark(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "getsockopt", "fd");
  uint32_t mark = 0;
  socklen_t length = sizeof(mark);
  if (getsockopt(fd, SOL_SOCKET, SO_MARK, &mark, &length) != 0) {
    Throw(env, errno, "getsockopt", "SO_MARK of fd " + std::to_string(fd));
  }
  return Napi::Number::New(env, mark);
}

// tuneSocket(fd, options): setsockopt(2) of each option given; the others are left as they are.
// Everything is validated before the first setsockopt; a failing call (EBADF, ENOTSOCK,
// EOPNOTSUPP on a non-TCP socket) throws, and the options before it stay applied.
Napi::Value TuneSocket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* call = "tuneSocket";
  int fd = FdArg(info, 0, call, "fd");
  Napi::Object options = OptionsArg(info, 1, call);
  // Bounds are the kernel's (tcp(7); net/ipv4/tcp.c): MAX_TCP_KEEPIDLE and MAX_TCP_KEEPINTVL are
  // 32767 s, MAX_TCP_KEEPCNT 127; TCP_USER_TIMEOUT takes a non-negative int of milliseconds.
  double idle = 0, interval = 0, count = 0, user_timeout = 0;
  bool linger_zero = false;
  const bool has_idle = OptionalIntegerField(options, call, "keepAliveIdleSeconds", 1, 32767, idle);
  const bool has_interval = OptionalIntegerField(options, call, "keepAliveIntervalSeconds", 1, 32767, interval);
  const bool has_count = OptionalIntegerField(options, call, "keepAliveCount", 1, 127, count);
  const bool has_user_timeout = OptionalIntegerField(options, call, "userTimeoutMs", 0, 2147483647.0, user_timeout);
  const bool has_linger = OptionalBoolField(options, call, "lingerZero", linger_zero);

  const std::string where = "fd " + std::to_string(fd);
  auto set_int = [&](int level, int name, int value, const char* option) {
    if (setsockopt(fd, level, name, &value, sizeof(value)) != 0) {
      Throw(env, errno, "setsockopt", std::string(option) + " on " + where);
    }
  };
  // The TCP_KEEP* values only matter while SO_KEEPALIVE is on (tcp(7)), so giving any of them
  // turns keepalive on.
  if (has_idle || has_interval || has_count) set_int(SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE");
  if (has_idle) set_int(IPPROTO_TCP, TCP_KEEPIDLE, static_cast<int>(idle), "TCP_KEEPIDLE");
  if (has_interval) set_int(IPPROTO_TCP, TCP_KEEPINTVL, static_cast<int>(interval), "TCP_KEEPINTVL");
  if (has_count) set_int(IPPROTO_TCP, TCP_KEEPCNT, static_cast<int>(count), "TCP_KEEPCNT");
  // TCP_USER_TIMEOUT (tcp(7), RFC 5482): how long transmitted data may stay unacknowledged
  // before the kernel drops the connection with ETIMEDOUT. Keepalive probes are only sent on an
  // idle connection, so they never notice a peer that vanished with our data in flight; 0 restores
  // the system default.
  if (has_user_timeout) set_int(IPPROTO_TCP, TCP_USER_TIMEOUT, static_cast<int>(user_timeout), "TCP_USER_TIMEOUT");
  if (has_linger) {
    // socket(7) SO_LINGER: on with a zero timeout, close() (also the implicit one when the process
    // dies) discards unsent data and sends RST (tcp_close -> tcp_disconnect), so peers see a reset
    // rather than a clean FIN. Off restores the default graceful close.
    linger value{};
    value.l_onoff = linger_zero ? 1 : 0;
    value.l_linger = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &value, sizeof(value)) != 0) {
      Throw(env, errno, "setsockopt", "SO_LINGER on " + where);
    }
  }
  return env.Undefined();
}

// socketOptions(fd): the current values of everything tuneSocket sets, by getsockopt(2).
Napi::Value SocketOptions(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "socketOptions", "fd");
  const std::string where = "fd " + std::to_string(fd);
  auto get_int = [&](int level, int name, const char* option) {
    int value = 0;
    socklen_t length = sizeof(value);
    if (getsockopt(fd, level, name, &value, &length) != 0) {
      Throw(env, errno, "getsockopt", std::string(option) + " of " + where);
    }
    return value;
  };
  Napi::Object result = Napi::Object::New(env);
  result.Set("keepAlive", Napi::Boolean::New(env, get_int(SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE") != 0));
  result.Set("keepAliveIdleSeconds", get_int(IPPROTO_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE"));
  result.Set("keepAliveIntervalSeconds", get_int(IPPROTO_TCP, TCP_KEEPINTVL, "TCP_KEEPINTVL"));
  result.Set("keepAliveCount", get_int(IPPROTO_TCP, TCP_KEEPCNT, "TCP_KEEPCNT"));
  result.Set("userTimeoutMs", get_int(IPPROTO_TCP, TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT"));
  linger value{};
  socklen_t length = sizeof(value);
  if (getsockopt(fd, SOL_SOCKET, SO_LINGER, &value, &length) != 0) {
    Throw(env, errno, "getsockopt", "SO_LINGER of " + where);
  }
  Napi::Object linger_result = Napi::Object::New(env);
  linger_result.Set("on", Napi::Boolean::New(env, value.l_onoff != 0));
  linger_result.Set("seconds", value.l_linger);
  result.Set("linger", linger_result);
  return result;
}

// dupFd(fd): fcntl(F_DUPFD_CLOEXEC), a second fd on the same open socket (dup(2)), close-on-exec
// like every fd Ferry makes.
Napi::Value DupFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "dupFd", "fd");
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) Throw(env, errno, "fcntl", "F_DUPFD_CLOEXEC of fd " + std::to_string(fd));
  return Napi::Number::New(env, copy);
}

// close(2). EINTR is not retried: on Linux the fd is released even when close reports EINTR, and
// retrying could close an fd another thread has just been given.
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "close", "fd");
  if (close(fd) != 0 && errno != EINTR) Throw(env, errno, "close", "fd " + std::to_string(fd));
  return env.Undefined();
}

}  // namespace

void InitSockets(Napi::Env env, Napi::Object exports) {
  exports.Set("socketCookie", Napi::Function::New(env, SocketCookie, "socketCookie"));
  exports.Set("socketMark", Napi::Function::New(env, SocketMark, "socketMark"));
  exports.Set("tuneSocket", Napi::Function::New(env, TuneSocket, "tuneSocket"));
  exports.Set("socketOptions", Napi::Function::New(env, SocketOptions, "socketOptions"));
  exports.Set("dupFd", Napi::Function::New(env, DupFd, "dupFd"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
}

}  // namespace ferry
