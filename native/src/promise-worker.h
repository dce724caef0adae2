// Base class for every blocking call: Run() on a libuv pool thread, then resolve or reject a
// Promise on the main thread (the serialport bindings pattern).
#ifndef FERRY_NATIVE_PROMISE_WORKER_H
#define FERRY_NATIVE_PROMISE_WORKER_H

#include <napi.h>

#include <exception>
#include <new>

#include "errors.h"

namespace ferry {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  PromiseWorker(Napi::Env env, const char* name)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}
  // The receiver is held by a persistent reference until the worker completes, so an ObjectWrap
  // whose native state the worker uses cannot be garbage-collected underneath it.
  // (AsyncWorker's own receiver constructors also demand a callback, hence our own reference; the
  // worker is deleted on the main thread after settling, which releases it.)
  PromiseWorker(const Napi::Object& receiver, const char* name)
      : Napi::AsyncWorker(receiver.Env(), name),
        deferred_(Napi::Promise::Deferred::New(receiver.Env())),
        receiver_(Napi::Persistent(receiver)) {}

  // Pool thread: no JS values may be touched. Report failure by filling failure_.
  virtual void Run() = 0;
  // Main thread, after Run() succeeded: build the resolved value.
  virtual Napi::Value Result(Napi::Env env) = 0;
  // Main thread, after either outcome (OnOK or OnError), before the Promise settles.
  virtual void Settled() {}

  Failure failure_;

 private:
  void Execute() override {
    try {
      Run();
    } catch (const std::bad_alloc&) {
      failure_ = MakeFailure(ENOMEM, "malloc", "out of memory on the worker thread");
    } catch (const std::exception& error) {
      failure_ = MakeFailure(EIO, "worker", error.what());
    }
    // SetError only routes completion to OnError; the real error is built from failure_.
    if (failure_.failed()) SetError(failure_.syscall);
  }

  void OnOK() override {
    Settled();
    try {
      deferred_.Resolve(Result(Env()));
    } catch (const Napi::Error& error) {
      deferred_.Reject(error.Value());
    }
  }

  void OnError(const Napi::Error& error) override {
    Settled();
    // failure_ is always set when we route here; the fallback covers an error node-addon-api
    // itself raised around Execute().
    Failure failure = failure_.failed() ? failure_ : MakeFailure(EIO, "worker", error.Message());
    deferred_.Reject(ToJsError(Env(), failure).Value());
  }

  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference receiver_;
};

}  // namespace ferry

#endif  // FERRY_NATIVE_PROMISE_WORKER_H
