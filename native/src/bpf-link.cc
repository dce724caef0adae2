// BpfLink: one attachment of a program to a hook (cgroup, netns), as a bpf_link fd.
//
// Kernel lifetime rule (kernel/bpf/syscall.c, bpf_link_put): a link stays attached while any
// reference to it exists, an open fd or a pin in bpffs. So close() only drops this handle's fd:
// a pinned link stays attached, an unpinned one is released by the kernel once its last fd is
// gone. detach() (BPF_LINK_DETACH, Linux 5.9+) is the only call that detaches regardless of pins.
#include <unistd.h>

#include <cerrno>
#include <string>

#include "addon.h"
#include "bpf-handles.h"
#include "errors.h"
#include "libbpf-log.h"

namespace ferry {

namespace {

struct LinkInit {
  bpf_link* link;
  std::string description;
};

// bpf_link__open(3): NULL with errno ENOENT when nothing is pinned there.
Napi::Value OpenPinnedLink(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = StringArg(info, 0, "bpf_link__open", "pinPath");
  LibbpfLogCapture capture;  // keeps libbpf's "failed to open link" warning off stderr
  bpf_link* link = bpf_link__open(path.c_str());
  if (link == nullptr) {
    int err = errno;
    if (err == ENOENT) return env.Null();
    Throw(env, err, "bpf_link__open", path);
  }
  // bpf_obj_get(2) opens any pinned object; make sure this one is a link before treating it so.
  std::string kind = BpfFdKind(bpf_link__fd(link));
  if (kind != "bpf-link") {
    bpf_link__destroy(link);
    Throw(env, EINVAL, "bpf_link__open", path + " is a " + kind + " pin, not a link");
  }
  return BpfLink::New(env, link, "link pinned at " + path);
}

}  // namespace

Napi::Function BpfLink::Define(Napi::Env env) {
  return DefineClass(env, "BpfLink",
                     {
                         InstanceAccessor<&BpfLink::Info>("info"),
                         InstanceMethod<&BpfLink::Pin>("pin"),
                         InstanceMethod<&BpfLink::Unpin>("unpin"),
                         InstanceMethod<&BpfLink::UpdateProgram>("updateProgram"),
                         InstanceMethod<&BpfLink::Detach>("detach"),
                         InstanceMethod<&BpfLink::Close>("close"),
                     });
}

Napi::Object BpfLink::New(Napi::Env env, bpf_link* link, const std::string& description) {
  LinkInit init{link, description};
  try {
    return Data(env).bpf_link.New({Napi::External<LinkInit>::New(env, &init)});
  } catch (...) {
    if (init.link != nullptr) bpf_link__destroy(init.link);
    throw;
  }
}

BpfLink::BpfLink(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfLink>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    ThrowArgument(info.Env(), "BpfLink",
                  "not constructible from JavaScript; use attachCgroup(), attachNetns() or openPinnedLink()");
  }
  LinkInit* init = info[0].As<Napi::External<LinkInit>>().Data();
  link_ = init->link;
  init->link = nullptr;
  description_ = init->description;
}

// For fd-based links bpf_link__destroy only close()s the fd (bpf_link__detach_fd), which per the
// rule at the top of this file never detaches a link that is pinned.
BpfLink::~BpfLink() {
  if (link_ != nullptr) bpf_link__destroy(link_);
}

void BpfLink::RequireOpen(Napi::Env env, const char* call) const {
  if (link_ == nullptr) Throw(env, EBADF, call, description_ + " is closed");
}

Napi::Value BpfLink::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* call = "bpf_obj_get_info_by_fd";
  RequireOpen(env, call);
  bpf_link_info link_info{};
  uint32_t length = sizeof(link_info);
  if (bpf_obj_get_info_by_fd(bpf_link__fd(link_), &link_info, &length) != 0) Throw(env, errno, call, description_);
  Napi::Object result = Napi::Object::New(env);
  result.Set("id", Napi::Number::New(env, link_info.id));
  result.Set("progId", Napi::Number::New(env, link_info.prog_id));
  result.Set("type", Napi::Number::New(env, link_info.type));
  // The hook the link is on: a cgroup id or a network namespace inode. The kernel reports 0 once the
  // link is detached (bpf_link_detach, or its cgroup/namespace went away); the link id lives on.
  double target = -1;
  if (link_info.type == BPF_LINK_TYPE_CGROUP) target = static_cast<double>(link_info.cgroup.cgroup_id);
  else if (link_info.type == BPF_LINK_TYPE_NETNS) target = static_cast<double>(link_info.netns.netns_ino);
  if (target >= 0) {
    result.Set("target", Napi::Number::New(env, target));
    result.Set("attached", Napi::Boolean::New(env, target != 0));
  } else {
    result.Set("attached", Napi::Boolean::New(env, true));
  }
  return result;
}

// bpf_link__pin(3) creates missing parent directories and refuses paths outside bpffs.
Napi::Value BpfLink::Pin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* call = "bpf_link__pin";
  RequireOpen(env, call);
  std::string path = StringArg(info, 0, call, "path");
  if (const char* pinned = bpf_link__pin_path(link_)) {
    Throw(env, EBUSY, call, description_ + " is already pinned at " + pinned);
  }
  LibbpfLogCapture capture;
  int err = bpf_link__pin(link_, path.c_str());
  if (err != 0) {
    Failure failure = MakeFailure(err, call, description_ + " at " + path);
    failure.log = capture.Text();
    Throw(env, failure);
  }
  return env.Undefined();
}

// Removes the pin this handle made, or the one it was opened from (bpf_link__open records it).
Napi::Value BpfLink::Unpin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* call = "bpf_link__unpin";
  RequireOpen(env, call);
  const char* pinned = bpf_link__pin_path(link_);
  if (pinned == nullptr) Throw(env, EINVAL, call, description_ + " is not pinned by this handle");
  std::string path = pinned;
  LibbpfLogCapture capture;
  int err = bpf_link__unpin(link_);
  if (err != 0) Throw(env, err, call, description_ + " at " + path);
  return env.Undefined();
}

// bpf_link_update (BPF_LINK_UPDATE, 5.7+): swap the program atomically, keeping the attachment;
// no window where the hook runs nothing.
Napi::Value BpfLink::UpdateProgram(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* call = "bpf_link__update_program";
  RequireOpen(env, call);
  if (info.Length() < 1 || !BpfObject::IsInstance(env, info[0])) {
    ThrowArgument(env, call, "program must be a BpfObject from loadObject()");
  }
  std::string name = StringArg(info, 1, call, "programName");
  BpfObject* object = BpfObject::Unwrap(info[0].As<Napi::Object>());
  bpf_program* program = object->ProgramOrThrow(env, name, call);
  int err = bpf_link__update_program(link_, program);
  if (err != 0) Throw(env, err, call, description_ + " to program " + name);
  return env.Undefined();
}

Napi::Value BpfLink::Detach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* call = "bpf_link_detach";
  RequireOpen(env, call);
  int err = bpf_link__detach(link_);
  if (err != 0) Throw(env, err, call, description_);
  return env.Undefined();
}

Napi::Value BpfLink::Close(const Napi::CallbackInfo& info) {
  if (link_ != nullptr) {
    bpf_link__destroy(link_);
    link_ = nullptr;
  }
  return info.Env().Undefined();
}

void InitBpfLink(Napi::Env env, Napi::Object exports, AddonData& data) {
  data.bpf_link = Napi::Persistent(BpfLink::Define(env));
  exports.Set("openPinnedLink", Napi::Function::New(env, OpenPinnedLink, "openPinnedLink"));
}

}  // namespace ferry
