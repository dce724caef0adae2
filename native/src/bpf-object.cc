// loadObject and BpfObject: open + load a .bpf.o with libbpf (maps pinned by name under a pin
// root), hand out its maps, and attach its programs to cgroups and network namespaces.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "addon.h"
#include "bpf-handles.h"
#include "errors.h"
#include "libbpf-log.h"
#include "promise-worker.h"

namespace ferry {

namespace {

// mkdir -p with mode 0700: the pin root holds maps that steer every pod's traffic.
bool MakeDirectories(const std::string& path, Failure& failure) {
  for (size_t slash = 1; slash != std::string::npos;) {
    slash = path.find('/', slash + 1);
    std::string prefix = path.substr(0, slash);
    if (prefix.empty() || prefix == "/") continue;
    if (mkdir(prefix.c_str(), 0700) == 0 || errno == EEXIST) continue;
    failure = MakeFailure(errno, "mkdir", prefix);
    return false;
  }
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    failure = MakeFailure(errno, "stat", path);
    return false;
  }
  if (!S_ISDIR(st.st_mode)) {
    failure = MakeFailure(ENOTDIR, "mkdir", path);
    return false;
  }
  return true;
}

// bpf_object__open_file + bpf_object__load on a pool thread: loading runs the verifier over
// every program, which can take tens of milliseconds or more.
class LoadWorker : public PromiseWorker {
 public:
  LoadWorker(Napi::Env env, std::string path, std::string pin_root)
      : PromiseWorker(env, "ferry.loadObject"), path_(std::move(path)), pin_root_(std::move(pin_root)) {}

  ~LoadWorker() override {
    if (object_ != nullptr) bpf_object__close(object_);
  }

 protected:
  void Run() override {
    if (!MakeDirectories(pin_root_, failure_)) return;
    LibbpfLogCapture capture;
    // Maps declared with __uint(pinning, LIBBPF_PIN_BY_NAME) are looked up at
    // <pin_root_path>/<map name>: reused when present and compatible, created and pinned there
    // otherwise (libbpf's bpf_object__create_maps).
    bpf_object_open_opts options{};
    options.sz = sizeof(options);
    options.pin_root_path = pin_root_.c_str();
    bpf_object* object = bpf_object__open_file(path_.c_str(), &options);
    if (object == nullptr) {
      failure_ = MakeFailure(errno, "bpf_object__open_file", path_);
      failure_.log = capture.Text();
      return;
    }
    // On a verifier rejection libbpf re-runs BPF_PROG_LOAD with a log buffer and prints the
    // verifier's log at warning level, which the capture keeps (last 8 KiB).
    int err = bpf_object__load(object);
    if (err != 0) {
      failure_ = MakeFailure(err, "bpf_object__load", path_);
      failure_.log = capture.Text();
      bpf_object__close(object);
      return;
    }
    object_ = object;
  }

  Napi::Value Result(Napi::Env env) override {
    bpf_object* object = object_;
    object_ = nullptr;
    return BpfObject::New(env, object);
  }

 private:
  std::string path_;
  std::string pin_root_;
  bpf_object* object_ = nullptr;
};

enum class AttachKind { kCgroup, kNetns };

// bpf_program__attach_cgroup / bpf_program__attach_netns (BPF_LINK_CREATE) on a pool thread.
// The receiver reference keeps the BpfObject alive and BeginOperation() keeps its memory, so the
// bpf_program* stays valid even if close() is called while this runs.
class AttachWorker : public PromiseWorker {
 public:
  AttachWorker(const Napi::Object& receiver, BpfObject* owner, bpf_program* program, std::string program_name,
               std::string path, AttachKind kind)
      : PromiseWorker(receiver, kind == AttachKind::kCgroup ? "ferry.attachCgroup" : "ferry.attachNetns"),
        owner_(owner),
        program_(program),
        program_name_(std::move(program_name)),
        path_(std::move(path)),
        kind_(kind) {
    owner_->BeginOperation();
  }

  ~AttachWorker() override {
    if (link_ != nullptr) bpf_link__destroy(link_);
  }

 protected:
  void Run() override {
    const bool cgroup = kind_ == AttachKind::kCgroup;
    const std::string call = cgroup ? "bpf_program__attach_cgroup" : "bpf_program__attach_netns";
    const std::string detail = "program " + program_name_ + " to " + path_;
    // The hook is named by an fd: a cgroup v2 directory, or a network namespace file. The link
    // takes its own reference, so ours is closed right after.
    int fd = open(path_.c_str(), cgroup ? O_RDONLY | O_DIRECTORY | O_CLOEXEC : O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      failure_ = MakeFailure(errno, "open", path_);
      return;
    }
    LibbpfLogCapture capture;
    bpf_link* link = cgroup ? bpf_program__attach_cgroup(program_, fd) : bpf_program__attach_netns(program_, fd);
    int err = errno;
    close(fd);
    if (link == nullptr) {
      failure_ = MakeFailure(err, call, detail);
      failure_.log = capture.Text();
      return;
    }
    link_ = link;
  }

  Napi::Value Result(Napi::Env env) override {
    bpf_link* link = link_;
    link_ = nullptr;
    return BpfLink::New(env, link, program_name_ + " on " + path_);
  }

  void Settled() override { owner_->EndOperation(); }

 private:
  BpfObject* owner_;
  bpf_program* program_;
  std::string program_name_;
  std::string path_;
  AttachKind kind_;
  bpf_link* link_ = nullptr;
};

Napi::Value LoadObject(const Napi::CallbackInfo& info) {
  std::string path = StringArg(info, 0, "loadObject", "objectPath");
  std::string pin_root = StringArg(info, 1, "loadObject", "pinRoot");
  auto* worker = new LoadWorker(info.Env(), std::move(path), std::move(pin_root));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace

Napi::Function BpfObject::Define(Napi::Env env) {
  return DefineClass(env, "BpfObject",
                     {
                         InstanceAccessor<&BpfObject::Programs>("programs"),
                         InstanceAccessor<&BpfObject::Maps>("maps"),
                         InstanceMethod<&BpfObject::Map>("map"),
                         InstanceMethod<&BpfObject::AttachCgroup>("attachCgroup"),
                         InstanceMethod<&BpfObject::AttachNetns>("attachNetns"),
                         InstanceMethod<&BpfObject::Close>("close"),
                     });
}

Napi::Object BpfObject::New(Napi::Env env, bpf_object* object) {
  try {
    return Data(env).bpf_object.New({Napi::External<bpf_object>::New(env, object)});
  } catch (...) {
    bpf_object__close(object);
    throw;
  }
}

bool BpfObject::IsInstance(Napi::Env env, const Napi::Value& value) {
  return value.IsObject() && value.As<Napi::Object>().InstanceOf(Data(env).bpf_object.Value());
}

BpfObject::BpfObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfObject>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    ThrowArgument(info.Env(), "BpfObject", "not constructible from JavaScript; use loadObject()");
  }
  bpf_object* object = info[0].As<Napi::External<bpf_object>>().Data();
  bpf_program* program;
  bpf_object__for_each_program(program, object) programs_.push_back(bpf_program__name(program));
  bpf_map* map;
  // Internal maps (.rodata, .data, .bss, .kconfig) are libbpf's backing for globals, not API.
  bpf_object__for_each_map(map, object) {
    if (!bpf_map__is_internal(map)) maps_.push_back(bpf_map__name(map));
  }
  path_ = bpf_object__name(object);
  object_ = object;  // last: nothing above may throw after ownership is taken
}

BpfObject::~BpfObject() { Release(); }

void BpfObject::Release() {
  if (object_ != nullptr) {
    bpf_object__close(object_);
    object_ = nullptr;
  }
}

void BpfObject::EndOperation() {
  if (--pending_ == 0 && closed_) Release();
}

bpf_program* BpfObject::ProgramOrThrow(Napi::Env env, const std::string& name, const char* call) {
  if (closed_) Throw(env, EBADF, call, "object " + path_ + " is closed");
  bpf_program* program = bpf_object__find_program_by_name(object_, name.c_str());
  if (program == nullptr) Throw(env, ENOENT, call, "no program " + name + " in object " + path_);
  return program;
}

Napi::Value BpfObject::Programs(const Napi::CallbackInfo& info) {
  Napi::Array result = Napi::Array::New(info.Env(), programs_.size());
  for (size_t i = 0; i < programs_.size(); ++i) result.Set(static_cast<uint32_t>(i), programs_[i]);
  return result;
}

Napi::Value BpfObject::Maps(const Napi::CallbackInfo& info) {
  Napi::Array result = Napi::Array::New(info.Env(), maps_.size());
  for (size_t i = 0; i < maps_.size(); ++i) result.Set(static_cast<uint32_t>(i), maps_[i]);
  return result;
}

// The handle gets a dup of the map fd, so it stays valid after this object is closed.
Napi::Value BpfObject::Map(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* call = "bpf_object__find_map_by_name";
  std::string name = StringArg(info, 0, call, "name");
  if (closed_) Throw(env, EBADF, call, "object " + path_ + " is closed");
  bpf_map* map = bpf_object__find_map_by_name(object_, name.c_str());
  if (map == nullptr || bpf_map__is_internal(map)) Throw(env, ENOENT, call, "no map " + name + " in object " + path_);
  int fd = fcntl(bpf_map__fd(map), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) Throw(env, errno, "fcntl", "F_DUPFD_CLOEXEC of map " + name);
  return BpfMap::New(env, fd, name);
}

Napi::Value BpfObject::AttachCgroup(const Napi::CallbackInfo& info) {
  const char* call = "bpf_program__attach_cgroup";
  std::string name = StringArg(info, 0, call, "programName");
  std::string path = StringArg(info, 1, call, "cgroupPath");
  bpf_program* program = ProgramOrThrow(info.Env(), name, call);
  auto* worker = new AttachWorker(Value(), this, program, std::move(name), std::move(path), AttachKind::kCgroup);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Value BpfObject::AttachNetns(const Napi::CallbackInfo& info) {
  const char* call = "bpf_program__attach_netns";
  std::string name = StringArg(info, 0, call, "programName");
  std::string path = StringArg(info, 1, call, "netnsPath");
  bpf_program* program = ProgramOrThrow(info.Env(), name, call);
  auto* worker = new AttachWorker(Value(), this, program, std::move(name), std::move(path), AttachKind::kNetns);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// Closing the object closes its program and map fds. Links keep their programs alive in the
// kernel and map handles hold dup'ed fds, so everything handed out stays valid. With attaches
// still running, the actual bpf_object__close waits for the last one (EndOperation).
Napi::Value BpfObject::Close(const Napi::CallbackInfo& info) {
  closed_ = true;
  if (pending_ == 0) Release();
  return info.Env().Undefined();
}

void InitBpfObject(Napi::Env env, Napi::Object exports, AddonData& data) {
  data.bpf_object = Napi::Persistent(BpfObject::Define(env));
  exports.Set("loadObject", Napi::Function::New(env, LoadObject, "loadObject"));
}

}  // namespace ferry
