// What the namespace-aware bindings share: an owning fd, socket addresses, and running a short
// piece of work inside another network namespace from a pool thread.
#ifndef FERRY_NATIVE_NETNS_H
#define FERRY_NATIVE_NETNS_H

#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <string>

#include "errors.h"

namespace ferry {

// Closes an fd on scope exit unless released.
class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
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

// An IPv4 or IPv6 socket address.
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
};

// family 4 or 6; false when host is not an address of that family.
bool ParseAddress(int family, const std::string& host, uint16_t port, SocketAddress& address);

// "10.0.0.1:80" or "[fd00::1]:80", for messages.
std::string Endpoint(int family, const std::string& host, uint16_t port);

// Runs body on the calling thread while it is inside the network namespace at netns_path, then
// returns the thread to its own namespace. Only for pool threads (setns(2) with CLONE_NEWNET
// moves the calling thread alone). False, with failure filled, when the namespace could not be
// entered; body's own errors are body's to report. Aborts the process if the thread cannot go
// back: it would otherwise run unrelated later work (fs, dns, other workers) in a pod's namespace.
bool RunInNetns(const std::string& netns_path, Failure& failure, const std::function<void()>& body);

// socket(2) inside the namespace at netns_path (RunInNetns around socket() alone); -1 on failure.
int SocketInNetns(const std::string& netns_path, int domain, int type, Failure& failure);

// setsockopt(2) of an int option; on failure fills failure naming the option and where.
bool SetIntOption(int fd, int level, int name, int value, const char* option, const std::string& where,
                  Failure& failure);

}  // namespace ferry

#endif  // FERRY_NATIVE_NETNS_H
