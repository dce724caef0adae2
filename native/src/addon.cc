// Module entry of ferry.node: registers every binding declared in src/native/binding.ts.
#include "addon.h"

#include <cmath>
#include <cstdint>
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

Napi::Object OptionsArg(const Napi::CallbackInfo& info, size_t index, const char* call) {
  if (info.Length() <= index || !info[index].IsObject()) ThrowArgument(info.Env(), call, "options must be an object");
  return info[index].As<Napi::Object>();
}

bool OptionalIntegerField(const Napi::Object& options, const char* call, const char* field, double min, double max,
                          double& out) {
  Napi::Value value = options.Get(field);
  if (value.IsUndefined()) return false;
  if (!value.IsNumber()) ThrowArgument(options.Env(), call, std::string("options.") + field + " must be a number");
  double number = value.As<Napi::Number>().DoubleValue();
  if (!(number >= min && number <= max) || std::floor(number) != number) {
    ThrowArgument(options.Env(), call,
                  std::string("options.") + field + " must be an integer in " +
                      std::to_string(static_cast<int64_t>(min)) + ".." + std::to_string(static_cast<int64_t>(max)));
  }
  out = number;
  return true;
}

double IntegerField(const Napi::Object& options, const char* call, const char* field, double min, double max) {
  double number = 0;
  if (!OptionalIntegerField(options, call, field, min, max, number)) {
    ThrowArgument(options.Env(), call, std::string("options.") + field + " must be a number");
  }
  return number;
}

bool OptionalBoolField(const Napi::Object& options, const char* call, const char* field, bool& out) {
  Napi::Value value = options.Get(field);
  if (value.IsUndefined()) return false;
  if (!value.IsBoolean()) ThrowArgument(options.Env(), call, std::string("options.") + field + " must be a boolean");
  out = value.As<Napi::Boolean>().Value();
  return true;
}

bool BoolField(const Napi::Object& options, const char* call, const char* field) {
  bool flag = false;
  if (!OptionalBoolField(options, call, field, flag)) {
    ThrowArgument(options.Env(), call, std::string("options.") + field + " must be a boolean");
  }
  return flag;
}

bool OptionalStringField(const Napi::Object& options, const char* call, const char* field, std::string& out) {
  Napi::Value value = options.Get(field);
  if (value.IsUndefined()) return false;
  if (!value.IsString()) ThrowArgument(options.Env(), call, std::string("options.") + field + " must be a string");
  out = value.As<Napi::String>().Utf8Value();
  return true;
}

std::string StringField(const Napi::Object& options, const char* call, const char* field) {
  std::string text;
  if (!OptionalStringField(options, call, field, text)) {
    ThrowArgument(options.Env(), call, std::string("options.") + field + " must be a string");
  }
  return text;
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
  InitHandover(env, exports);
  InitPodRouting(env, exports);
  InitProbe(env, exports);
  return exports;
}

}  // namespace

}  // namespace ferry

// NODE_API_MODULE pastes the function name into an identifier, so it must be unqualified.
static Napi::Object InitFerry(Napi::Env env, Napi::Object exports) { return ferry::Init(env, exports); }

NODE_API_MODULE(ferry, InitFerry)
