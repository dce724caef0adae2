// BpfMap: a BPF map fd with lookup/update/delete/keys/pin, sized and checked against the map's
// own key_size/value_size (bpf(2) would read past a short buffer otherwise).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "addon.h"
#include "bpf-handles.h"
#include "errors.h"
#include "promise-worker.h"

namespace ferry {

namespace {

struct MapInit {
  int fd;
  std::string name;
  bpf_map_info info;
};

// Per-CPU maps exchange one value per possible CPU, which the TypeScript size checks do not model;
// Ferry's maps are not per-CPU, so refuse them clearly rather than half-support them.
bool IsPerCpu(uint32_t type) {
  return type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY ||
         type == BPF_MAP_TYPE_LRU_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

Napi::Value OpenPinnedMap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = StringArg(info, 0, "bpf_obj_get", "pinPath");
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) Throw(env, errno, "bpf_obj_get", path);
  std::string kind = BpfFdKind(fd);
  if (kind != "bpf-map") {
    close(fd);
    Throw(env, EINVAL, "bpf_obj_get", path + " is a " + kind + " pin, not a map");
  }
  return BpfMap::New(env, fd, "");
}

}  // namespace

std::string BpfFdKind(int fd) {
  char link[64];
  char target[256];
  snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  ssize_t length = readlink(link, target, sizeof(target) - 1);
  if (length < 0) return "unknown object";
  target[length] = '\0';
  // "anon_inode:bpf-map" -> "bpf-map"
  const char* colon = strchr(target, ':');
  return colon ? colon + 1 : target;
}

Napi::Function BpfMap::Define(Napi::Env env) {
  return DefineClass(env, "BpfMap",
                     {
                         InstanceAccessor<&BpfMap::Info>("info"),
                         InstanceMethod<&BpfMap::Lookup>("lookup"),
                         InstanceMethod<&BpfMap::Update>("update"),
                         InstanceMethod<&BpfMap::UpdateSocket>("updateSocket"),
                         InstanceMethod<&BpfMap::Delete>("delete"),
                         InstanceMethod<&BpfMap::Keys>("keys"),
                         InstanceMethod<&BpfMap::Count>("count"),
                         InstanceMethod<&BpfMap::Pin>("pin"),
                         InstanceMethod<&BpfMap::Close>("close"),
                     });
}

Napi::Object BpfMap::New(Napi::Env env, int fd, const std::string& name) {
  MapInit init{fd, name, {}};
  uint32_t length = sizeof(init.info);
  if (bpf_obj_get_info_by_fd(fd, &init.info, &length) != 0) {
    int err = errno;
    close(fd);
    Throw(env, err, "bpf_obj_get_info_by_fd", "map " + name);
  }
  if (init.name.empty()) init.name = init.info.name;
  try {
    Napi::Object object = Data(env).bpf_map.New({Napi::External<MapInit>::New(env, &init)});
    return object;
  } catch (...) {
    if (init.fd >= 0) close(init.fd);  // the constructor did not take it
    throw;
  }
}

BpfMap::BpfMap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfMap>(info) {
  // Only New() may construct: a BpfMap without an fd would be a trap.
  if (info.Length() != 1 || !info[0].IsExternal()) {
    ThrowArgument(info.Env(), "BpfMap", "not constructible from JavaScript; use loadObject().map() or openPinnedMap()");
  }
  MapInit* init = info[0].As<Napi::External<MapInit>>().Data();
  fd_ = init->fd;
  init->fd = -1;
  name_ = init->name;
  info_ = init->info;
}

BpfMap::~BpfMap() {
  if (fd_ >= 0) close(fd_);
}

std::string BpfMap::Describe() const { return "map " + name_; }

void BpfMap::RequireOpen(Napi::Env env, const char* call) const {
  if (fd_ < 0) Throw(env, EBADF, call, Describe() + " is closed");
}

void BpfMap::RequirePlainValues(Napi::Env env, const char* call) const {
  if (IsPerCpu(info_.type)) Throw(env, EOPNOTSUPP, call, Describe() + " is per-CPU; per-CPU values are not supported");
}

Napi::Buffer<uint8_t> BpfMap::KeyArg(const Napi::CallbackInfo& info, size_t index, const char* call) const {
  if (info.Length() <= index || !info[index].IsBuffer()) ThrowArgument(info.Env(), call, "key must be a Buffer");
  auto key = info[index].As<Napi::Buffer<uint8_t>>();
  if (key.Length() != info_.key_size) {
    ThrowArgument(info.Env(), call,
                  "key is " + std::to_string(key.Length()) + " bytes; " + Describe() + " has keySize " +
                      std::to_string(info_.key_size));
  }
  return key;
}

Napi::Value BpfMap::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object result = Napi::Object::New(env);
  result.Set("name", name_);
  result.Set("type", Napi::Number::New(env, info_.type));
  result.Set("keySize", Napi::Number::New(env, info_.key_size));
  result.Set("valueSize", Napi::Number::New(env, info_.value_size));
  result.Set("maxEntries", Napi::Number::New(env, info_.max_entries));
  result.Set("id", Napi::Number::New(env, info_.id));
  return result;
}

// bpf_map_lookup_elem: ENOENT is an answer (no entry), not an error. For SOCKMAP/SOCKHASH with
// an 8-byte value the kernel returns the socket's cookie (sock_map_lookup_sys, Linux 5.10+).
Napi::Value BpfMap::Lookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* call = "bpf_map_lookup_elem";
  RequireOpen(env, call);
  RequirePlainValues(env, call);
  auto key = KeyArg(info, 0, call);
  std::vector<uint8_t> value(info_.value_size);
  if (bpf_map_lookup_elem(fd_, key.Data(), value.data()) != 0) {
    if (errno == ENOENT) return env.Null();
    Throw(env, errno, call, Describe());
  }
  return Napi::Buffer<uint8_t>::Copy(env, value.data(), value.size());
}

Napi::Value BpfMap::Update(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* call = "bpf_map_update_elem";
  RequireOpen(env, call);
  RequirePlainValues(env, call);
  auto key = KeyArg(info, 0, call);
  if (info.Length() < 2 || !info[1].IsBuffer()) ThrowArgument(env, call, "value must be a Buffer");
  auto value = info[1].As<Napi::Buffer<uint8_t>>();
  if (value.Length() != info_.value_size) {
    ThrowArgument(env, call,
                  "value is " + std::to_string(value.Length()) + " bytes; " + Describe() + " has valueSize " +
                      std::to_string(info_.value_size));
  }
  uint64_t flags = 0;
  if (info.Length() > 2 && !info[2].IsUndefined()) {
    if (!info[2].IsNumber()) ThrowArgument(env, call, "flags must be a number");
    double raw = info[2].As<Napi::Number>().DoubleValue();
    if (raw != BPF_ANY && raw != BPF_NOEXIST && raw != BPF_EXIST) {
      ThrowArgument(env, call, "flags must be 0 (BPF_ANY), 1 (BPF_NOEXIST) or 2 (BPF_EXIST)");
    }
    flags = static_cast<uint64_t>(raw);
  }
  if (bpf_map_update_elem(fd_, key.Data(), value.Data(), flags) != 0) Throw(env, errno, call, Describe());
  return env.Undefined();
}

// Socket maps take the socket's fd as the value, 4 or 8 bytes wide as the map was declared
// (sock_map_update_elem_sys reads a u32 or u64 fd).
Napi::Value BpfMap::UpdateSocket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* call = "bpf_map_update_elem";
  RequireOpen(env, call);
  auto key = KeyArg(info, 0, call);
  int socket_fd = FdArg(info, 1, call, "fd");
  if (info_.type != BPF_MAP_TYPE_SOCKMAP && info_.type != BPF_MAP_TYPE_SOCKHASH) {
    Throw(env, EINVAL, call, Describe() + " is not a SOCKMAP or SOCKHASH");
  }
  uint64_t value64 = static_cast<uint64_t>(socket_fd);
  uint32_t value32 = static_cast<uint32_t>(socket_fd);
  const void* value = nullptr;
  if (info_.value_size == sizeof(value64)) value = &value64;
  else if (info_.value_size == sizeof(value32)) value = &value32;
  else Throw(env, EINVAL, call, Describe() + " has valueSize " + std::to_string(info_.value_size) + ", not 4 or 8");
  if (bpf_map_update_elem(fd_, key.Data(), value, BPF_ANY) != 0) {
    Throw(env, errno, call, Describe() + ", socket fd " + std::to_string(socket_fd));
  }
  return env.Undefined();
}

Napi::Value BpfMap::Delete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* call = "bpf_map_delete_elem";
  RequireOpen(env, call);
  auto key = KeyArg(info, 0, call);
  if (bpf_map_delete_elem(fd_, key.Data()) != 0) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    Throw(env, errno, call, Describe());
  }
  return Napi::Boolean::New(env, true);
}

// bpf_map_get_next_key from NULL walks every key. A hash map restarts from its first bucket if
// the previous key was deleted meanwhile, so bound the walk at max_entries: no map can hold more.
Napi::Value BpfMap::Keys(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* call = "bpf_map_get_next_key";
  RequireOpen(env, call);
  std::vector<std::vector<uint8_t>> keys;
  std::vector<uint8_t> next(info_.key_size);
  const void* previous = nullptr;
  while (keys.size() < info_.max_entries) {
    if (bpf_map_get_next_key(fd_, previous, next.data()) != 0) {
      if (errno == ENOENT) break;
      Throw(env, errno, call, Describe());
    }
    keys.push_back(next);
    previous = keys.back().data();
  }
  Napi::Array result = Napi::Array::New(env, keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    result.Set(static_cast<uint32_t>(i), Napi::Buffer<uint8_t>::Copy(env, keys[i].data(), keys[i].size()));
  }
  return result;
}

namespace {

// count(): the number of entries, walked with bpf_map_get_next_key on a pool thread so a full
// 64k-entry map costs the event loop nothing. The walk uses its own dup of the fd, so close()
// on the main thread meanwhile cannot pull it away (or hand the number to another file).
class CountWorker : public PromiseWorker {
 public:
  CountWorker(const Napi::Object& receiver, int fd, uint32_t key_size, uint32_t max_entries, std::string what)
      : PromiseWorker(receiver, "ferry.BpfMap.count"),
        fd_(fcntl(fd, F_DUPFD_CLOEXEC, 0)),
        dup_errno_(errno),
        key_size_(key_size),
        max_entries_(max_entries),
        what_(std::move(what)) {}

  ~CountWorker() override {
    if (fd_ >= 0) close(fd_);
  }

 protected:
  void Run() override {
    if (fd_ < 0) {
      failure_ = MakeFailure(dup_errno_, "fcntl", "F_DUPFD_CLOEXEC of " + what_);
      return;
    }
    std::vector<uint8_t> a(key_size_), b(key_size_);
    uint8_t* previous = nullptr;
    uint8_t* next = a.data();
    // Bounded like keys(): a hash map restarts its walk when the previous key was deleted meanwhile.
    while (count_ < max_entries_) {
      if (bpf_map_get_next_key(fd_, previous, next) != 0) {
        if (errno == ENOENT) return;
        failure_ = MakeFailure(errno, "bpf_map_get_next_key", what_);
        return;
      }
      count_ += 1;
      previous = next;
      next = next == a.data() ? b.data() : a.data();
    }
  }

  Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, count_); }

 private:
  int fd_;
  int dup_errno_;
  uint32_t key_size_;
  uint32_t max_entries_;
  std::string what_;
  uint32_t count_ = 0;
};

}  // namespace

Napi::Value BpfMap::Count(const Napi::CallbackInfo& info) {
  RequireOpen(info.Env(), "bpf_map_get_next_key");
  auto* worker = new CountWorker(info.This().As<Napi::Object>(), fd_, info_.key_size, info_.max_entries, Describe());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// bpf_obj_pin: the pin holds its own reference, so the map outlives this fd and the process.
Napi::Value BpfMap::Pin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* call = "bpf_obj_pin";
  RequireOpen(env, call);
  std::string path = StringArg(info, 0, call, "path");
  if (bpf_obj_pin(fd_, path.c_str()) != 0) Throw(env, errno, call, Describe() + " at " + path);
  return env.Undefined();
}

Napi::Value BpfMap::Close(const Napi::CallbackInfo& info) {
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  return info.Env().Undefined();
}

void InitBpfMap(Napi::Env env, Napi::Object exports, AddonData& data) {
  data.bpf_map = Napi::Persistent(BpfMap::Define(env));
  exports.Set("openPinnedMap", Napi::Function::New(env, OpenPinnedMap, "openPinnedMap"));
}

}  // namespace ferry
