// Failures of syscalls and libbpf calls, and how they become JS Errors carrying errno, code and
// syscall (the shape src/native/binding.ts declares as NativeErrorShape).
#ifndef FERRY_NATIVE_ERRORS_H
#define FERRY_NATIVE_ERRORS_H

#include <napi.h>

#include <string>

namespace ferry {

// A failed call, built on whichever thread failed and turned into a JS Error on the main thread.
// err is a positive errno, or a libbpf LIBBPF_ERRNO__* code (4000..4099): libbpf 1.x returns
// -err from int functions and sets errno for NULL-returning ones; both are normalised here.
struct Failure {
  int err = 0;
  std::string syscall;  // the call that failed: 'setns', 'connect', 'bpf_object__load', ...
  std::string detail;   // the object involved: a path, a program name, an address
  std::string log;      // libbpf/verifier output captured during the call, if any

  bool failed() const { return err != 0; }
};

// Fills a Failure; err may be given as errno (positive) or as a libbpf return (negative).
Failure MakeFailure(int err, std::string syscall, std::string detail);

// 'ENOENT', 'LIBBPF_ERRNO__FORMAT', ... for an errno value.
std::string ErrnoName(int err);
// strerror(3) text, or libbpf_strerror(3) for libbpf's own codes.
std::string ErrnoMessage(int err);

// "syscall: strerror (detail)" plus the captured log on the following lines.
Napi::Error ToJsError(Napi::Env env, const Failure& failure);

// Throws as a C++ exception (NAPI_CPP_EXCEPTIONS); node-addon-api rethrows it into JS.
[[noreturn]] void Throw(Napi::Env env, const Failure& failure);
[[noreturn]] void Throw(Napi::Env env, int err, const std::string& syscall, const std::string& detail);
// A TypeError with errno EINVAL for a bad argument reaching C++ (TypeScript validates first, so
// this only fires when the raw binding is called directly).
[[noreturn]] void ThrowArgument(Napi::Env env, const std::string& call, const std::string& detail);

}  // namespace ferry

#endif  // FERRY_NATIVE_ERRORS_H
