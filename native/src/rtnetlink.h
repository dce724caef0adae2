// A small NETLINK_ROUTE client (rtnetlink(7)): build one request with u32 attributes, send it and
// read the kernel's answer. Used by configurePodRouting (rules and routes) and the kernel probe.
#ifndef FERRY_NATIVE_RTNETLINK_H
#define FERRY_NATIVE_RTNETLINK_H

#include <linux/netlink.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "errors.h"
#include "netns.h"

namespace ferry {

// One netlink message: nlmsghdr, the family header (rtmsg, fib_rule_hdr...) and attributes, each
// padded to NLMSG_ALIGN / RTA_ALIGN as netlink(7) requires.
class NetlinkRequest {
 public:
  NetlinkRequest(uint16_t type, uint16_t flags, const void* family_header, size_t family_header_size);
  void AddU32(uint16_t attribute, uint32_t value);
  nlmsghdr* header() { return reinterpret_cast<nlmsghdr*>(buffer_.data()); }

 private:
  std::vector<uint8_t> buffer_;
};

// The kernel's verdict on a request: 0, or a positive errno and, with extended acks
// (NETLINK_EXT_ACK, Linux 4.12+), the kernel's own explanation ("FIB table does not exist").
struct NetlinkAnswer {
  int error = 0;
  std::string message;
};

class RouteNetlink {
 public:
  // Takes a socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE) fd; the socket talks to the
  // network namespace it was created in, whatever thread uses it later.
  explicit RouteNetlink(int fd) : fd_(fd) {}
  // socket() in the calling thread's current namespace.
  static int OpenSocket(Failure& failure);
  // Extended acks and a receive timeout, so a pool thread never waits forever on the kernel.
  bool Prepare(Failure& failure, const std::string& where);
  // Sends request with NLM_F_ACK and waits for its acknowledgement. False only for a local
  // failure (sendto/recv), which fills failure; the kernel's verdict is in answer.
  bool Transact(NetlinkRequest& request, NetlinkAnswer& answer, Failure& failure, const std::string& where);
  // Sends request with NLM_F_DUMP and reads the dump to its end, discarding the entries; answer
  // carries the error the dump ended with (NLMSG_DONE's payload or an NLMSG_ERROR).
  bool Dump(NetlinkRequest& request, NetlinkAnswer& answer, Failure& failure, const std::string& where);

 private:
  bool Send(NetlinkRequest& request, Failure& failure, const std::string& where);
  bool Receive(NetlinkAnswer& answer, Failure& failure, const std::string& where);
  UniqueFd fd_;
  uint32_t seq_ = 0;
};

}  // namespace ferry

#endif  // FERRY_NATIVE_RTNETLINK_H
