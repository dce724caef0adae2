// Unix-socket plumbing for an agent's hand-over of its listening sockets to its successor: a listening
// socket only its owner can reach (unixListen), a connect that reports who is on the other end
// (unixConnect, peerCredentials: SO_PEERCRED), frames that carry file descriptors (sendFrame,
// receiveFrame: sendmsg/recvmsg with SCM_RIGHTS, unix(7)) and what a descriptor received is
// (socketInfo). Node cannot pass descriptors over an arbitrary Unix socket (only over its own IPC
// channel to a child), so this part is native. Frames are a 4-byte big-endian length and that many
// bytes; a frame's descriptors ride on its first byte.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "addon.h"
#include "errors.h"
#include "netns.h"
#include "promise-worker.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71  // include/uapi/asm-generic/socket.h, Linux 5.14+
#endif

namespace ferry {

namespace {

// Frames are small JSON documents; a larger length prefix is garbage, not a bigger message.
constexpr uint32_t kMaxFrameBytes = 64 * 1024;
// Descriptors one frame may carry (a pod's listeners of one kind are one per address family).
constexpr int kMaxFrameFds = 16;

bool UnixAddress(const std::string& path, sockaddr_un& address, socklen_t& length) {
  std::memset(&address, 0, sizeof(address));
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) return false;
  std::memcpy(address.sun_path, path.c_str(), path.size());
  length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return true;
}

// A non-blocking, close-on-exec AF_UNIX stream socket for `path`, its address filled in.
UniqueFd UnixSocket(Napi::Env env, const char* call, const std::string& path, sockaddr_un& address, socklen_t& length) {
  if (!UnixAddress(path, address, length)) {
    ThrowArgument(env, call, "path '" + path + "' is longer than a Unix socket address allows (107 bytes)");
  }
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) Throw(env, errno, "socket", "AF_UNIX for " + path);
  return fd;
}

Napi::Object Credentials(Napi::Env env, const ucred& credentials) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("pid", Napi::Number::New(env, credentials.pid));
  result.Set("uid", Napi::Number::New(env, credentials.uid));
  result.Set("gid", Napi::Number::New(env, credentials.gid));
  return result;
}

// SO_PEERCRED (unix(7)): the credentials the peer had when it called connect(2) or listen(2), filled
// in by the kernel, so a peer cannot claim someone else's.
ucred PeerCredentials(Napi::Env env, int fd, const std::string& where) {
  ucred credentials{};
  socklen_t length = sizeof(credentials);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) {
    Throw(env, errno, "getsockopt", "SO_PEERCRED of " + where);
  }
  return credentials;
}

// unixListen(path, mode): a listening AF_UNIX stream socket bound at path, non-blocking and
// close-on-exec, for net.Server.listen({ fd }). The file is created under a umask that leaves only
// `mode`'s bits (bind(2) applies the umask; unix(7)), so it is never reachable more widely, even
// for an instant, and then chmod'ed to exactly `mode`. The path must not exist.
Napi::Value UnixListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* call = "unixListen";
  std::string path = StringArg(info, 0, call, "path");
  if (info.Length() < 2 || !info[1].IsNumber()) ThrowArgument(env, call, "mode must be a number");
  const mode_t mode = static_cast<mode_t>(info[1].As<Napi::Number>().Uint32Value() & 0777);
  sockaddr_un address{};
  socklen_t length = 0;
  UniqueFd fd = UnixSocket(env, call, path, address, length);
  // umask(2) is per process: another thread creating a file at this instant gets a stricter mask,
  // never a looser one.
  const mode_t previous = umask(static_cast<mode_t>(0777 & ~mode));
  const int bound = bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), length);
  const int bind_errno = errno;
  umask(previous);
  if (bound != 0) Throw(env, bind_errno, "bind", path);
  if (chmod(path.c_str(), mode) != 0) {
    const int chmod_errno = errno;
    unlink(path.c_str());
    Throw(env, chmod_errno, "chmod", path);
  }
  if (listen(fd.get(), 16) != 0) {
    const int listen_errno = errno;
    unlink(path.c_str());
    Throw(env, listen_errno, "listen", path);
  }
  return Napi::Number::New(env, fd.Release());
}

// unixConnect(path): a connected AF_UNIX stream socket (non-blocking, close-on-exec) and the
// listener's credentials. A Unix stream connect completes at once or fails at once: ENOENT (no
// socket there), ECONNREFUSED (a socket file nobody listens on any more), EAGAIN (backlog full).
Napi::Value UnixConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* call = "unixConnect";
  std::string path = StringArg(info, 0, call, "path");
  sockaddr_un address{};
  socklen_t length = 0;
  UniqueFd fd = UnixSocket(env, call, path, address, length);
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), length) != 0) Throw(env, errno, "connect", path);
  ucred credentials = PeerCredentials(env, fd.get(), path);
  Napi::Object result = Credentials(env, credentials);
  result.Set("fd", Napi::Number::New(env, fd.Release()));
  return result;
}

Napi::Value PeerCredentialsBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "peerCredentials", "fd");
  return Credentials(env, PeerCredentials(env, fd, "fd " + std::to_string(fd)));
}

using Clock = std::chrono::steady_clock;

// Waits until fd is ready for `events` or the deadline passes; false with failure filled otherwise.
bool WaitFor(int fd, short events, Clock::time_point deadline, const std::string& what, Failure& failure) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      failure = MakeFailure(ETIMEDOUT, "poll", what);
      return false;
    }
    pollfd entry{fd, events, 0};
    const int ready = poll(&entry, 1, static_cast<int>(left));
    if (ready < 0) {
      if (errno == EINTR) continue;
      failure = MakeFailure(errno, "poll", what);
      return false;
    }
    if (ready > 0) return true;
  }
}

// sendFrame(fd, payload, fds, timeoutMs): one frame, its descriptors attached to its first byte.
// The fds given stay open in the sender (SCM_RIGHTS duplicates them into the receiver). MSG_NOSIGNAL:
// a peer gone is EPIPE here, not a SIGPIPE for the process.
class SendFrameWorker : public PromiseWorker {
 public:
  SendFrameWorker(Napi::Env env, int fd, std::vector<uint8_t> frame, std::vector<int> fds, int timeout_ms)
      : PromiseWorker(env, "ferry.sendFrame"), fd_(fd), frame_(std::move(frame)), fds_(std::move(fds)), timeout_ms_(timeout_ms) {}

 protected:
  void Run() override {
    const std::string where = "frame of " + std::to_string(frame_.size()) + " bytes on fd " + std::to_string(fd_);
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms_);
    size_t sent = 0;
    while (sent < frame_.size()) {
      iovec vector{frame_.data() + sent, frame_.size() - sent};
      msghdr message{};
      message.msg_iov = &vector;
      message.msg_iovlen = 1;
      std::vector<char> control;
      if (sent == 0 && !fds_.empty()) {
        control.assign(CMSG_SPACE(sizeof(int) * fds_.size()), 0);
        message.msg_control = control.data();
        message.msg_controllen = control.size();
        cmsghdr* header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int) * fds_.size());
        std::memcpy(CMSG_DATA(header), fds_.data(), sizeof(int) * fds_.size());
      }
      const ssize_t written = sendmsg(fd_, &message, MSG_NOSIGNAL);
      if (written < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          if (!WaitFor(fd_, POLLOUT, deadline, "sending a " + where, failure_)) return;
          continue;
        }
        failure_ = MakeFailure(errno, "sendmsg", where);
        return;
      }
      sent += static_cast<size_t>(written);
    }
  }

  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }

 private:
  int fd_;
  std::vector<uint8_t> frame_;
  std::vector<int> fds_;
  int timeout_ms_;
};

// receiveFrame(fd, timeoutMs): the next frame and the descriptors it carried (close-on-exec:
// MSG_CMSG_CLOEXEC), or null at a clean end of stream. Reads never go past the frame's last byte,
// so descriptors of the next frame stay queued for the next call (unix(7): a read that takes
// descriptors ends there). A frame over 64 KiB, more than 16 descriptors, or an end of stream inside
// a frame is an error, and whatever descriptors came with it are closed.
class ReceiveFrameWorker : public PromiseWorker {
 public:
  ReceiveFrameWorker(Napi::Env env, int fd, int timeout_ms)
      : PromiseWorker(env, "ferry.receiveFrame"), fd_(fd), timeout_ms_(timeout_ms) {}

  ~ReceiveFrameWorker() override { CloseReceived(); }

 protected:
  void Run() override {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms_);
    uint8_t header[4];
    size_t got = 0;
    if (!ReadExactly(header, sizeof(header), got, deadline, true)) return;
    if (got == 0) {
      ended_ = true;
      return;
    }
    const uint32_t length = (static_cast<uint32_t>(header[0]) << 24) | (static_cast<uint32_t>(header[1]) << 16) |
                            (static_cast<uint32_t>(header[2]) << 8) | static_cast<uint32_t>(header[3]);
    if (length > kMaxFrameBytes) {
      failure_ = MakeFailure(EMSGSIZE, "recvmsg",
                             "a frame of " + std::to_string(length) + " bytes on fd " + std::to_string(fd_) +
                                 " (at most " + std::to_string(kMaxFrameBytes) + ")");
      CloseReceived();
      return;
    }
    payload_.resize(length);
    size_t body = 0;
    if (length > 0 && !ReadExactly(payload_.data(), length, body, deadline, false)) return;
  }

  Napi::Value Result(Napi::Env env) override {
    if (ended_) return env.Null();
    Napi::Object result = Napi::Object::New(env);
    result.Set("payload", Napi::Buffer<uint8_t>::Copy(env, payload_.data(), payload_.size()));
    Napi::Array fds = Napi::Array::New(env, received_.size());
    for (size_t i = 0; i < received_.size(); i++) fds.Set(static_cast<uint32_t>(i), Napi::Number::New(env, received_[i]));
    result.Set("fds", fds);
    received_.clear();  // ownership passed to JS
    return result;
  }

 private:
  // Reads `want` bytes into `into`; `got` counts them. At a frame boundary (`may_end`), an end of
  // stream before the first byte is a clean end (got == 0, true).
  bool ReadExactly(uint8_t* into, size_t want, size_t& got, Clock::time_point deadline, bool may_end) {
    const std::string where = "fd " + std::to_string(fd_);
    while (got < want) {
      iovec vector{into + got, want - got};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFrameFds)];
      msghdr message{};
      message.msg_iov = &vector;
      message.msg_iovlen = 1;
      message.msg_control = control;
      message.msg_controllen = sizeof(control);
      const ssize_t read = recvmsg(fd_, &message, MSG_CMSG_CLOEXEC);
      if (read < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          if (!WaitFor(fd_, POLLIN, deadline, "waiting for a frame on " + where, failure_)) {
            CloseReceived();
            return false;
          }
          continue;
        }
        failure_ = MakeFailure(errno, "recvmsg", where);
        CloseReceived();
        return false;
      }
      for (cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr; header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
        const size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
          int fd = -1;
          std::memcpy(&fd, CMSG_DATA(header) + i * sizeof(int), sizeof(int));
          received_.push_back(fd);
        }
      }
      if ((message.msg_flags & MSG_CTRUNC) != 0) {
        // The kernel closed the descriptors that did not fit (scm_detach_fds); ours go too.
        failure_ = MakeFailure(EMSGSIZE, "recvmsg",
                               "a frame with more than " + std::to_string(kMaxFrameFds) + " descriptors on " + where);
        CloseReceived();
        return false;
      }
      if (read == 0) {
        if (may_end && got == 0) return true;
        failure_ = MakeFailure(EPROTO, "recvmsg", "the peer closed " + where + " in the middle of a frame");
        CloseReceived();
        return false;
      }
      got += static_cast<size_t>(read);
    }
    return true;
  }

  void CloseReceived() {
    for (int fd : received_) close(fd);
    received_.clear();
  }

  int fd_;
  int timeout_ms_;
  bool ended_ = false;
  std::vector<uint8_t> payload_;
  std::vector<int> received_;
};

int TimeoutArg(const Napi::CallbackInfo& info, size_t index, const char* call) {
  if (info.Length() <= index || !info[index].IsNumber()) ThrowArgument(info.Env(), call, "timeoutMs must be a number");
  double value = info[index].As<Napi::Number>().DoubleValue();
  if (!(value >= 1 && value <= 600000)) ThrowArgument(info.Env(), call, "timeoutMs must be in 1..600000");
  return static_cast<int>(value);
}

Napi::Value SendFrame(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* call = "sendFrame";
  int fd = FdArg(info, 0, call, "fd");
  if (info.Length() < 2 || !info[1].IsBuffer()) ThrowArgument(env, call, "payload must be a Buffer");
  Napi::Buffer<uint8_t> payload = info[1].As<Napi::Buffer<uint8_t>>();
  if (payload.Length() > kMaxFrameBytes) {
    ThrowArgument(env, call, "payload must be at most " + std::to_string(kMaxFrameBytes) + " bytes");
  }
  if (info.Length() < 3 || !info[2].IsArray()) ThrowArgument(env, call, "fds must be an array");
  Napi::Array list = info[2].As<Napi::Array>();
  if (list.Length() > static_cast<uint32_t>(kMaxFrameFds)) {
    ThrowArgument(env, call, "fds must hold at most " + std::to_string(kMaxFrameFds) + " descriptors");
  }
  std::vector<int> fds;
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value value = list.Get(i);
    double number = value.IsNumber() ? value.As<Napi::Number>().DoubleValue() : -1;
    if (!(number >= 0 && number <= 2147483647.0) || number != static_cast<double>(static_cast<int>(number))) {
      ThrowArgument(env, call, "fds[" + std::to_string(i) + "] must be a non-negative integer fd");
    }
    fds.push_back(static_cast<int>(number));
  }
  int timeout_ms = TimeoutArg(info, 3, call);
  const uint32_t length = static_cast<uint32_t>(payload.Length());
  std::vector<uint8_t> frame(4 + length);
  frame[0] = static_cast<uint8_t>(length >> 24);
  frame[1] = static_cast<uint8_t>(length >> 16);
  frame[2] = static_cast<uint8_t>(length >> 8);
  frame[3] = static_cast<uint8_t>(length);
  if (length > 0) std::memcpy(frame.data() + 4, payload.Data(), length);
  auto* worker = new SendFrameWorker(env, fd, std::move(frame), std::move(fds), timeout_ms);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Value ReceiveFrame(const Napi::CallbackInfo& info) {
  const char* call = "receiveFrame";
  int fd = FdArg(info, 0, call, "fd");
  int timeout_ms = TimeoutArg(info, 1, call);
  auto* worker = new ReceiveFrameWorker(info.Env(), fd, timeout_ms);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// socketInfo(fd): what a descriptor is, from the kernel rather than from whoever sent it: its family
// (SO_DOMAIN), type, protocol, whether it listens (SO_ACCEPTCONN), the address it is bound to
// (getsockname) and its network namespace's cookie (SO_NETNS_COOKIE). A descriptor that is not a
// socket fails with ENOTSOCK.
Napi::Value SocketInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "socketInfo", "fd");
  const std::string where = "fd " + std::to_string(fd);
  auto get_int = [&](int name, const char* option) {
    int value = 0;
    socklen_t length = sizeof(value);
    if (getsockopt(fd, SOL_SOCKET, name, &value, &length) != 0) Throw(env, errno, "getsockopt", std::string(option) + " of " + where);
    return value;
  };
  const int domain = get_int(SO_DOMAIN, "SO_DOMAIN");
  const int type = get_int(SO_TYPE, "SO_TYPE");
  const int protocol = get_int(SO_PROTOCOL, "SO_PROTOCOL");
  const bool listening = get_int(SO_ACCEPTCONN, "SO_ACCEPTCONN") != 0;
  Napi::Object result = Napi::Object::New(env);
  result.Set("family", Napi::Number::New(env, domain == AF_INET ? 4 : domain == AF_INET6 ? 6 : domain == AF_UNIX ? 0 : -domain));
  result.Set("stream", Napi::Boolean::New(env, type == SOCK_STREAM));
  result.Set("tcp", Napi::Boolean::New(env, (domain == AF_INET || domain == AF_INET6) && protocol == IPPROTO_TCP));
  result.Set("listening", Napi::Boolean::New(env, listening));
  sockaddr_storage local{};
  socklen_t length = sizeof(local);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) != 0) Throw(env, errno, "getsockname", where);
  char text[INET6_ADDRSTRLEN] = "";
  uint16_t port = 0;
  if (local.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&local);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
    port = ntohs(in->sin_port);
  } else if (local.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&local);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
    port = ntohs(in6->sin6_port);
  }
  result.Set("host", Napi::String::New(env, text));
  result.Set("port", Napi::Number::New(env, port));
  uint64_t cookie = 0;
  socklen_t cookie_length = sizeof(cookie);
  if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &cookie_length) != 0) {
    Throw(env, errno, "getsockopt", "SO_NETNS_COOKIE of " + where);
  }
  result.Set("netnsCookie", Napi::BigInt::New(env, cookie));
  return result;
}

}  // namespace

void InitHandover(Napi::Env env, Napi::Object exports) {
  exports.Set("unixListen", Napi::Function::New(env, UnixListen, "unixListen"));
  exports.Set("unixConnect", Napi::Function::New(env, UnixConnect, "unixConnect"));
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentialsBinding, "peerCredentials"));
  exports.Set("sendFrame", Napi::Function::New(env, SendFrame, "sendFrame"));
  exports.Set("receiveFrame", Napi::Function::New(env, ReceiveFrame, "receiveFrame"));
  exports.Set("socketInfo", Napi::Function::New(env, SocketInfo, "socketInfo"));
}

}  // namespace ferry
