// Per-environment state of the addon (one per Node.js main thread or worker_thread) and the
// entry points each source file registers.
#ifndef FERRY_NATIVE_ADDON_H
#define FERRY_NATIVE_ADDON_H

#include <napi.h>

#include <string>

namespace ferry {

// Constructors of the ObjectWrap classes, kept per environment via napi_set_instance_data so the
// addon is safe to load in several worker_threads.
struct AddonData {
  Napi::FunctionReference bpf_object;
  Napi::FunctionReference bpf_map;
  Napi::FunctionReference bpf_link;
};

inline AddonData& Data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

// Argument readers shared by the bindings; they throw a TypeError naming `what` when the JS value
// has the wrong type.
std::string StringArg(const Napi::CallbackInfo& info, size_t index, const char* call, const char* what);
int FdArg(const Napi::CallbackInfo& info, size_t index, const char* call, const char* what);

// Readers for an options object argument: each throws a TypeError naming options.<field> when the
// field is missing or mistyped. The Optional variants return false, leaving `out` alone, when the
// field is undefined.
Napi::Object OptionsArg(const Napi::CallbackInfo& info, size_t index, const char* call);
double IntegerField(const Napi::Object& options, const char* call, const char* field, double min, double max);
bool OptionalIntegerField(const Napi::Object& options, const char* call, const char* field, double min, double max,
                          double& out);
bool BoolField(const Napi::Object& options, const char* call, const char* field);
bool OptionalBoolField(const Napi::Object& options, const char* call, const char* field, bool& out);
std::string StringField(const Napi::Object& options, const char* call, const char* field);
bool OptionalStringField(const Napi::Object& options, const char* call, const char* field, std::string& out);

void InitSockets(Napi::Env env, Napi::Object exports);
void InitNetns(Napi::Env env, Napi::Object exports);
void InitHandover(Napi::Env env, Napi::Object exports);
void InitPodRouting(Napi::Env env, Napi::Object exports);
void InitProbe(Napi::Env env, Napi::Object exports);
void InitBpfObject(Napi::Env env, Napi::Object exports, AddonData& data);
void InitBpfMap(Napi::Env env, Napi::Object exports, AddonData& data);
void InitBpfLink(Napi::Env env, Napi::Object exports, AddonData& data);

}  // namespace ferry

#endif  // FERRY_NATIVE_ADDON_H
