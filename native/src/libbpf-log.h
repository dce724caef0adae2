// Captures libbpf's diagnostic output (including the verifier log it prints when a program is
// rejected) on the calling thread, so a failure can carry the text that explains it.
#ifndef FERRY_NATIVE_LIBBPF_LOG_H
#define FERRY_NATIVE_LIBBPF_LOG_H

#include <string>

namespace ferry {

// Installs the process-wide libbpf print callback (libbpf_set_print(3)). Idempotent; called at
// module init. Output that no LibbpfLogCapture is collecting is dropped: the errors we raise carry
// what matters, and stray stderr lines would break the agent's JSON logs.
void InstallLibbpfPrint();

// While alive, libbpf messages printed by *this thread* append to the capture. libbpf calls its
// print callback synchronously on the thread that made the call, so a thread_local target keeps
// concurrent loads on different libuv pool threads from mixing their logs.
class LibbpfLogCapture {
 public:
  // Keep the tail: a verifier rejection's reason is at the end of its log.
  static constexpr size_t kMaxBytes = 8 * 1024;

  LibbpfLogCapture();
  ~LibbpfLogCapture();
  LibbpfLogCapture(const LibbpfLogCapture&) = delete;
  LibbpfLogCapture& operator=(const LibbpfLogCapture&) = delete;

  void Append(const char* text, size_t length);
  // The last kMaxBytes, prefixed with a marker when the head was cut.
  std::string Text() const;

 private:
  std::string TextUntrimmed() const;

  std::string buffer_;
  bool truncated_ = false;
  LibbpfLogCapture* previous_;
};

}  // namespace ferry

#endif  // FERRY_NATIVE_LIBBPF_LOG_H
