// Fast, non-blocking socket queries on fds Node already owns: SO_COOKIE, SO_MARK, close(2).
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
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
}

}  // namespace ferry
