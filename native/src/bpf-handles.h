// ObjectWrap classes over libbpf objects and BPF fds: BpfObject (a loaded .bpf.o), BpfMap (a map
// fd) and BpfLink (an attachment). Each owns its fd, has an explicit close(), and its destructor
// (run by the GC finalizer) closes whatever close() did not.
#ifndef FERRY_NATIVE_BPF_HANDLES_H
#define FERRY_NATIVE_BPF_HANDLES_H

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <napi.h>

#include <string>
#include <vector>

namespace ferry {

class BpfObject : public Napi::ObjectWrap<BpfObject> {
 public:
  static Napi::Function Define(Napi::Env env);
  // Takes ownership of object (bpf_object__close on failure too).
  static Napi::Object New(Napi::Env env, bpf_object* object);
  static bool IsInstance(Napi::Env env, const Napi::Value& value);

  explicit BpfObject(const Napi::CallbackInfo& info);
  ~BpfObject() override;

  // The named program, or a thrown error naming it (EBADF after close, ENOENT if unknown).
  bpf_program* ProgramOrThrow(Napi::Env env, const std::string& name, const char* call);
  // Attach workers bracket their pool-thread use of a bpf_program* with these, so close() can
  // defer bpf_object__close until no worker still uses the object's memory.
  void BeginOperation() { ++pending_; }
  void EndOperation();

 private:
  Napi::Value Programs(const Napi::CallbackInfo& info);
  Napi::Value Maps(const Napi::CallbackInfo& info);
  Napi::Value Map(const Napi::CallbackInfo& info);
  Napi::Value AttachCgroup(const Napi::CallbackInfo& info);
  Napi::Value AttachNetns(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  void Release();

  bpf_object* object_ = nullptr;
  std::string path_;
  std::vector<std::string> programs_;
  std::vector<std::string> maps_;
  int pending_ = 0;
  bool closed_ = false;
};

class BpfMap : public Napi::ObjectWrap<BpfMap> {
 public:
  static Napi::Function Define(Napi::Env env);
  // Takes ownership of fd (closed on failure too). name overrides the kernel's 15-byte name.
  static Napi::Object New(Napi::Env env, int fd, const std::string& name);

  explicit BpfMap(const Napi::CallbackInfo& info);
  ~BpfMap() override;

 private:
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Lookup(const Napi::CallbackInfo& info);
  Napi::Value Update(const Napi::CallbackInfo& info);
  Napi::Value UpdateSocket(const Napi::CallbackInfo& info);
  Napi::Value Delete(const Napi::CallbackInfo& info);
  Napi::Value Keys(const Napi::CallbackInfo& info);
  Napi::Value Count(const Napi::CallbackInfo& info);
  Napi::Value Pin(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  void RequireOpen(Napi::Env env, const char* call) const;
  void RequirePlainValues(Napi::Env env, const char* call) const;
  Napi::Buffer<uint8_t> KeyArg(const Napi::CallbackInfo& info, size_t index, const char* call) const;
  std::string Describe() const;

  int fd_ = -1;
  std::string name_;
  bpf_map_info info_{};
};

class BpfLink : public Napi::ObjectWrap<BpfLink> {
 public:
  static Napi::Function Define(Napi::Env env);
  // Takes ownership of link (bpf_link__destroy on failure too).
  static Napi::Object New(Napi::Env env, bpf_link* link, const std::string& description);

  explicit BpfLink(const Napi::CallbackInfo& info);
  ~BpfLink() override;

 private:
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Pin(const Napi::CallbackInfo& info);
  Napi::Value Unpin(const Napi::CallbackInfo& info);
  Napi::Value UpdateProgram(const Napi::CallbackInfo& info);
  Napi::Value Detach(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  void RequireOpen(Napi::Env env, const char* call) const;

  bpf_link* link_ = nullptr;
  std::string description_;  // "fx_connect4 on /sys/fs/cgroup/x", or the pin it was opened from
};

// What kind of BPF object an fd is: "bpf-map", "bpf-link", "bpf-prog", ... read from the
// anon-inode name /proc/self/fd/N links to (bpf_obj_get(2) returns any pinned object).
std::string BpfFdKind(int fd);

}  // namespace ferry

#endif  // FERRY_NATIVE_BPF_HANDLES_H
