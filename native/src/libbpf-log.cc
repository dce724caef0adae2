// libbpf print callback routed into a per-thread capture buffer (see libbpf-log.h).
#include "libbpf-log.h"

#include <bpf/libbpf.h>

#include <cstdarg>
#include <cstdio>
#include <vector>

namespace ferry {

namespace {

thread_local LibbpfLogCapture* current_capture = nullptr;

int Print(enum libbpf_print_level level, const char* format, va_list args) {
  LibbpfLogCapture* capture = current_capture;
  // LIBBPF_DEBUG is per-relocation chatter; warnings and info (which include the verifier log
  // libbpf re-fetches after a failed BPF_PROG_LOAD) are what explain a failure.
  if (capture == nullptr || level == LIBBPF_DEBUG) return 0;
  va_list copy;
  va_copy(copy, args);
  int needed = vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  if (needed <= 0) return 0;
  std::vector<char> text(static_cast<size_t>(needed) + 1);
  vsnprintf(text.data(), text.size(), format, args);
  capture->Append(text.data(), static_cast<size_t>(needed));
  return needed;
}

}  // namespace

void InstallLibbpfPrint() { libbpf_set_print(Print); }

LibbpfLogCapture::LibbpfLogCapture() : previous_(current_capture) { current_capture = this; }

LibbpfLogCapture::~LibbpfLogCapture() { current_capture = previous_; }

void LibbpfLogCapture::Append(const char* text, size_t length) {
  buffer_.append(text, length);
  // Trim lazily at twice the limit so a long log costs amortised O(n), not O(n^2).
  if (buffer_.size() > 2 * kMaxBytes) {
    buffer_.erase(0, buffer_.size() - kMaxBytes);
    truncated_ = true;
  }
}

std::string LibbpfLogCapture::Text() const {
  std::string text = TextUntrimmed();
  // libbpf lines end in '\n'; drop the last so the error message does not end in a blank line.
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

std::string LibbpfLogCapture::TextUntrimmed() const {
  if (buffer_.size() <= kMaxBytes && !truncated_) return buffer_;
  size_t start = buffer_.size() > kMaxBytes ? buffer_.size() - kMaxBytes : 0;
  // Resume at a line start so the first line shown is whole.
  size_t newline = buffer_.find('\n', start);
  if (newline != std::string::npos && newline + 1 < buffer_.size()) start = newline + 1;
  return "[... earlier libbpf output cut ...]\n" + buffer_.substr(start);
}

}  // namespace ferry
