// Converts errno / libbpf error codes into JS Errors with errno, code and syscall properties.
#include "errors.h"

#include <bpf/libbpf.h>
#include <string.h>

#include <cerrno>

namespace ferry {

namespace {

// Kernel-internal errno values that leak out of bpf(2) (include/linux/errno.h); glibc has no
// name for them, so strerrorname_np(3) returns NULL.
constexpr int kENOTSUPP = 524;

const char* LibbpfErrnoName(int err) {
  switch (err) {
    case LIBBPF_ERRNO__LIBELF: return "LIBBPF_ERRNO__LIBELF";
    case LIBBPF_ERRNO__FORMAT: return "LIBBPF_ERRNO__FORMAT";
    case LIBBPF_ERRNO__KVERSION: return "LIBBPF_ERRNO__KVERSION";
    case LIBBPF_ERRNO__ENDIAN: return "LIBBPF_ERRNO__ENDIAN";
    case LIBBPF_ERRNO__INTERNAL: return "LIBBPF_ERRNO__INTERNAL";
    case LIBBPF_ERRNO__RELOC: return "LIBBPF_ERRNO__RELOC";
    case LIBBPF_ERRNO__LOAD: return "LIBBPF_ERRNO__LOAD";
    case LIBBPF_ERRNO__VERIFY: return "LIBBPF_ERRNO__VERIFY";
    case LIBBPF_ERRNO__PROG2BIG: return "LIBBPF_ERRNO__PROG2BIG";
    case LIBBPF_ERRNO__KVER: return "LIBBPF_ERRNO__KVER";
    case LIBBPF_ERRNO__PROGTYPE: return "LIBBPF_ERRNO__PROGTYPE";
    case LIBBPF_ERRNO__WRNGPID: return "LIBBPF_ERRNO__WRNGPID";
    case LIBBPF_ERRNO__INVSEQ: return "LIBBPF_ERRNO__INVSEQ";
    case LIBBPF_ERRNO__NLPARSE: return "LIBBPF_ERRNO__NLPARSE";
    default: return nullptr;
  }
}

}  // namespace

Failure MakeFailure(int err, std::string syscall, std::string detail) {
  Failure failure;
  failure.err = err < 0 ? -err : err;
  // A failing call that forgot to set errno must still produce a failure, not a success.
  if (failure.err == 0) failure.err = EIO;
  failure.syscall = std::move(syscall);
  failure.detail = std::move(detail);
  return failure;
}

std::string ErrnoName(int err) {
  if (const char* name = LibbpfErrnoName(err)) return name;
  if (err == kENOTSUPP) return "ENOTSUPP";
  // strerrorname_np(3): glibc 2.32+ (Debian 12 has 2.36).
  if (const char* name = strerrorname_np(err)) return name;
  return "ERRNO_" + std::to_string(err);
}

std::string ErrnoMessage(int err) {
  if (err == kENOTSUPP) return "Operation not supported by this kernel";
  char buf[256];
  // libbpf_strerror(3) knows LIBBPF_ERRNO__* and falls back to strerror_r for the rest.
  if (libbpf_strerror(err, buf, sizeof(buf)) == 0) return buf;
  return strerror(err);
}

Napi::Error ToJsError(Napi::Env env, const Failure& failure) {
  std::string message = failure.syscall + ": " + ErrnoMessage(failure.err);
  if (!failure.detail.empty()) message += " (" + failure.detail + ")";
  if (!failure.log.empty()) message += "\n" + failure.log;
  Napi::Error error = Napi::Error::New(env, message);
  Napi::Object object = error.Value();
  object.Set("errno", Napi::Number::New(env, failure.err));
  object.Set("code", Napi::String::New(env, ErrnoName(failure.err)));
  object.Set("syscall", Napi::String::New(env, failure.syscall));
  if (!failure.log.empty()) object.Set("log", Napi::String::New(env, failure.log));
  return error;
}

void Throw(Napi::Env env, const Failure& failure) { throw ToJsError(env, failure); }

void Throw(Napi::Env env, int err, const std::string& syscall, const std::string& detail) {
  Throw(env, MakeFailure(err, syscall, detail));
}

void ThrowArgument(Napi::Env env, const std::string& call, const std::string& detail) {
  Napi::TypeError error = Napi::TypeError::New(env, call + ": " + strerror(EINVAL) + " (" + detail + ")");
  Napi::Object object = error.Value();
  object.Set("errno", Napi::Number::New(env, EINVAL));
  object.Set("code", Napi::String::New(env, "EINVAL"));
  object.Set("syscall", Napi::String::New(env, call));
  throw error;
}

}  // namespace ferry
