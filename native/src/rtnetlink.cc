// NETLINK_ROUTE requests and their acknowledgements (netlink(7), rtnetlink(7)), blocking with a
// receive timeout: only ever called from pool threads.
#include "rtnetlink.h"

#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <cstring>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270  // include/linux/socket.h
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10  // include/uapi/linux/netlink.h, Linux 4.3+
#endif
#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11  // include/uapi/linux/netlink.h, Linux 4.12+
#endif

namespace ferry {

namespace {

// Long enough for any rtnetlink answer on a loaded machine, short enough that a wedged kernel
// path cannot hold a pool thread indefinitely.
constexpr int kReceiveTimeoutSeconds = 5;

// Netlink messages larger than a page are split by the kernel per skb; 64 KiB holds any one
// datagram rtnetlink sends (NLMSG_GOODSIZE is at most 8 KiB, a dump skb up to 32 KiB).
constexpr size_t kReceiveBufferSize = 64 * 1024;

// NLMSGERR_ATTR_MSG from the TLVs after an NLMSG_ERROR (NLM_F_ACK_TLVS), when present.
std::string ExtendedAckMessage(const nlmsghdr* header) {
  if (!(header->nlmsg_flags & NLM_F_ACK_TLVS)) return "";
  const auto* error = reinterpret_cast<const nlmsgerr*>(NLMSG_DATA(header));
  // With NETLINK_CAP_ACK the echoed request is only its header (NLM_F_CAPPED).
  size_t offset = NLMSG_HDRLEN + sizeof(nlmsgerr);
  if (!(header->nlmsg_flags & NLM_F_CAPPED)) offset += error->msg.nlmsg_len - NLMSG_HDRLEN;
  const auto* base = reinterpret_cast<const uint8_t*>(header);
  while (offset + NLA_HDRLEN <= header->nlmsg_len) {
    const auto* attribute = reinterpret_cast<const nlattr*>(base + offset);
    if (attribute->nla_len < NLA_HDRLEN || offset + attribute->nla_len > header->nlmsg_len) break;
    if ((attribute->nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG) {
      const char* text = reinterpret_cast<const char*>(base + offset + NLA_HDRLEN);
      return std::string(text, strnlen(text, attribute->nla_len - NLA_HDRLEN));
    }
    offset += NLA_ALIGN(attribute->nla_len);
  }
  return "";
}

}  // namespace

NetlinkRequest::NetlinkRequest(uint16_t type, uint16_t flags, const void* family_header, size_t family_header_size)
    : buffer_(NLMSG_SPACE(family_header_size), 0) {
  nlmsghdr* header = this->header();
  header->nlmsg_len = NLMSG_LENGTH(family_header_size);
  header->nlmsg_type = type;
  header->nlmsg_flags = NLM_F_REQUEST | flags;
  memcpy(NLMSG_DATA(header), family_header, family_header_size);
}

void NetlinkRequest::AddU32(uint16_t attribute, uint32_t value) {
  const size_t offset = NLMSG_ALIGN(header()->nlmsg_len);
  buffer_.resize(offset + RTA_SPACE(sizeof(value)), 0);
  auto* rta = reinterpret_cast<rtattr*>(buffer_.data() + offset);
  rta->rta_type = attribute;
  rta->rta_len = RTA_LENGTH(sizeof(value));
  memcpy(RTA_DATA(rta), &value, sizeof(value));
  header()->nlmsg_len = static_cast<uint32_t>(offset + RTA_LENGTH(sizeof(value)));
}

int RouteNetlink::OpenSocket(Failure& failure) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) failure = MakeFailure(errno, "socket", "AF_NETLINK NETLINK_ROUTE");
  return fd;
}

bool RouteNetlink::Prepare(Failure& failure, const std::string& where) {
  int on = 1;
  // Both are optional refinements; older kernels refuse them with ENOPROTOOPT and still work.
  setsockopt(fd_.get(), SOL_NETLINK, NETLINK_CAP_ACK, &on, sizeof(on));
  setsockopt(fd_.get(), SOL_NETLINK, NETLINK_EXT_ACK, &on, sizeof(on));
  timeval timeout{};
  timeout.tv_sec = kReceiveTimeoutSeconds;
  if (setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) != 0) {
    failure = MakeFailure(errno, "setsockopt", "SO_RCVTIMEO on the NETLINK_ROUTE socket " + where);
    return false;
  }
  return true;
}

bool RouteNetlink::Send(NetlinkRequest& request, Failure& failure, const std::string& where) {
  nlmsghdr* header = request.header();
  header->nlmsg_seq = ++seq_;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;  // nl_pid 0: the kernel
  ssize_t sent;
  do {
    sent = sendto(fd_.get(), header, header->nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel));
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) {
    failure = MakeFailure(errno, "sendto", "NETLINK_ROUTE " + where);
    return false;
  }
  return true;
}

bool RouteNetlink::Transact(NetlinkRequest& request, NetlinkAnswer& answer, Failure& failure,
                            const std::string& where) {
  request.header()->nlmsg_flags |= NLM_F_ACK;
  return Send(request, failure, where) && Receive(answer, failure, where);
}

bool RouteNetlink::Dump(NetlinkRequest& request, NetlinkAnswer& answer, Failure& failure, const std::string& where) {
  request.header()->nlmsg_flags |= NLM_F_DUMP;
  return Send(request, failure, where) && Receive(answer, failure, where);
}

// Reads until the NLMSG_ERROR (an acknowledgement or a refusal) or NLMSG_DONE (a dump's end) of
// the request just sent; a dump's entries are skipped.
bool RouteNetlink::Receive(NetlinkAnswer& answer, Failure& failure, const std::string& where) {
  const uint32_t seq = seq_;
  std::vector<uint8_t> buffer(kReceiveBufferSize);
  for (;;) {
    ssize_t received = recv(fd_.get(), buffer.data(), buffer.size(), 0);
    if (received < 0 && errno == EINTR) continue;
    if (received < 0) {
      // EAGAIN: SO_RCVTIMEO expired with no answer.
      failure = MakeFailure(errno == EAGAIN ? ETIMEDOUT : errno, "recv", "NETLINK_ROUTE answer to " + where);
      return false;
    }
    int length = static_cast<int>(received);
    for (auto* header = reinterpret_cast<nlmsghdr*>(buffer.data()); NLMSG_OK(header, length);
         header = NLMSG_NEXT(header, length)) {
      if (header->nlmsg_seq != seq) continue;  // a late answer to an earlier request
      if (header->nlmsg_type == NLMSG_ERROR) {
        const auto* error = reinterpret_cast<const nlmsgerr*>(NLMSG_DATA(header));
        answer.error = -error->error;  // 0 is the positive acknowledgement
        answer.message = ExtendedAckMessage(header);
        return true;
      }
      if (header->nlmsg_type == NLMSG_DONE) {
        // A dump's end; its payload is the int the dump finished with (netlink_dump()).
        int status = 0;
        if (header->nlmsg_len >= NLMSG_LENGTH(sizeof(status))) memcpy(&status, NLMSG_DATA(header), sizeof(status));
        answer.error = -status;
        answer.message.clear();
        return true;
      }
    }
  }
}

}  // namespace ferry
