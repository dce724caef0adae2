// Module entry of ferry.node: registers every binding declared in src/native/binding.ts.
#include "addon.h"

#include <string>

#include "errors.h"
#include "libbpf-log.h"

namespace ferry {

std::string StringArg(const Napi::CallbackInfo& info, size_t index, const char* call, const char* what) {
  if (info.Length() <= index || !info[index].IsString()) {
    ThrowArgument(info.Env(), call, std::string(what) + " must be a string");
  }
  std::string value = info[index].As<Napi::String>().Utf8Value();
  if (value.empty() || value.find('\0') != std::string::npos) {
    ThrowArgument(info.Env(), call, std::string(what) + " must be a non-empty string without NUL bytes");
  }
  return value;
}

int FdArg(const Napi::CallbackInfo& info, size_t index, const char* call, const char* what) {
  if (info.Length() <= index || !info[index].IsNumber()) {
    ThrowArgument(info.Env(), call, std::string(what) + " must be a number");
  }
  double value = info[index].As<Napi::Number>().DoubleValue();
  if (!(value >= 0 && value <= 2147483647.0) || value != static_cast<double>(static_cast<int>(value))) {
    ThrowArgument(info.Env(), call, std::string(what) + " must be a non-negative integer fd");
  }
  return static_cast<int>(value);
}

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InstallLibbpfPrint();
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);  // deleted by node-addon-api when the env tears down
  InitBpfMap(env, exports, *data);
  InitBpfLink(env, exports, *data);
  InitBpfObject(env, exports, *data);
  InitSockets(env, exports);
  InitNetns(env, exports);
  InitProbe(env, exports);
  return exports;
}

}  // namespace

}  // namespace ferry

// NODE_API_MODULE pastes the function name into an identifier, so it must be unqualified.
static Napi::Object InitFerry(Napi::Env env, Napi::Object exports) { return ferry::Init(env, exports); }

NODE_API_MODULE(ferry, InitFerry)
