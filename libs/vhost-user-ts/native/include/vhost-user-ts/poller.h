// Poller: a uv_poll_t on Node's own event loop, for fds Node cannot wrap (eventfds, the
// vhost-user socket with its SCM_RIGHTS traffic, the host sockets of programs built on
// vhost-user-ts). Header-only, like napi-util.h: each addon that includes it has its own class.
//
// Lifetime. The uv_poll_t lives in a separately allocated Handle because libuv needs it until
// uv_close's callback runs, which may be after the JS object is gone; Handle::owner is cleared at
// close so a late event never reaches a dead Poller. close() and the GC finalizer both close the
// handle (whichever comes first; the finalizer never calls JS).
//
// Reachability. The callback is stored as a property of the JS object under a fresh symbol, so
// the GC traces it through the object (a callback that refers back to the Poller does not pin it
// forever); the native side keeps only a weak reference for fast access. While started, the
// Poller pins its own JS object (ObjectWrap::Ref), as Node's handles do: an active poller keeps
// firing even if JS dropped every reference to it. Stopped or closed, it can be collected.
//
// Hang-ups. uv_poll is level-triggered, and libuv turns a bare POLLHUP into "readable" (its epoll
// loop merges the watched events into a lone EPOLLHUP or EPOLLERR so that the reader sees the
// condition). A pipe whose writer has closed is readable forever, and a drain that reads 0 bytes
// changes nothing: the callback would run again at once, a spinning core. So a draining poller
// treats end of file, a read error other than EAGAIN and UV_DISCONNECT as final: it stops and
// reports a negative status (UV_EOF, or -errno), as libuv itself does for POLLERR (UV_EBADF). A
// poller that does not drain leaves reading to its owner, which sees the end of file itself.
#pragma once

#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <memory>

#include "napi-util.h"

namespace napi_util {

class Poller : public Napi::ObjectWrap<Poller> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Poller(const Napi::CallbackInfo& info);
  ~Poller() override;

 private:
  struct Handle {
    uv_poll_t poll;
    Poller* owner;
  };

  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  static void OnPoll(uv_poll_t* poll, int status, int events);
  void Dispatch(int status, int events);
  void Deactivate();
  void CloseHandle();
  bool SameFile() const;
  int Drain(int events, double* value) const;

  int fd_ = -1;
  dev_t dev_ = 0;  // identity of the file polled, to notice a closed or reused fd in start()
  ino_t ino_ = 0;
  bool drain_ = false;
  bool active_ = false;            // uv_poll_start'ed, and the JS object pinned by Ref()
  Handle* handle_ = nullptr;       // nullptr once closed (or if construction failed)
  Napi::FunctionReference callback_;  // weak: the JS object holds the callback strongly
  std::unique_ptr<Napi::AsyncContext> async_;  // so async_hooks see the callbacks as one resource
};

inline Napi::Function Poller::Define(Napi::Env env) {
  return DefineClass(env, "Poller",
                     {
                         InstanceMethod<&Poller::Start>("start"),
                         InstanceMethod<&Poller::Stop>("stop"),
                         InstanceMethod<&Poller::Close>("close"),
                     });
}

// new Poller(fd, callback, drainEventfd). Throws (e.g. EEXIST when the fd is already polled,
// EPERM for a regular file, EBADF for a closed fd).
inline Poller::Poller(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Poller>(info) {
  Napi::Env env = info.Env();
  if (!ArgFd(info, 0, &fd_)) return;
  if (!info[1].IsFunction()) {
    Napi::TypeError::New(env, "callback must be a function").ThrowAsJavaScriptException();
    return;
  }
  drain_ = info[2].ToBoolean().Value();

  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
    ThrowErrno(env, EINVAL, "napi_get_uv_event_loop");
    return;
  }
  auto handle = std::make_unique<Handle>();
  int err = uv_poll_init(loop, &handle->poll, fd_);  // registers nothing with the loop on failure
  if (err < 0) {
    ThrowErrno(env, -err, "uv_poll_init");
    return;
  }
  struct stat st;
  if (fstat(fd_, &st) == 0) {
    dev_ = st.st_dev;
    ino_ = st.st_ino;
  }
  handle_ = handle.release();
  handle_->owner = this;
  handle_->poll.data = handle_;

  info.This().As<Napi::Object>().DefineProperty(
      Napi::PropertyDescriptor::Value(Napi::Symbol::New(env, "callback"), info[1], napi_default));
  callback_ = Napi::Weak(info[1].As<Napi::Function>());
  async_ = std::make_unique<Napi::AsyncContext>(env, "Poller");
}

inline Poller::~Poller() {
  // Garbage collected (or the environment is shutting down) without close(). No JS here.
  if (handle_ != nullptr) {
    uv_poll_stop(&handle_->poll);
    CloseHandle();
  }
}

// Stops polling and drops the pin on the JS object.
inline void Poller::Deactivate() {
  if (!active_) return;
  uv_poll_stop(&handle_->poll);
  active_ = false;
  Unref();
}

// uv_close; the Handle is freed in the close callback, once libuv is done with it.
inline void Poller::CloseHandle() {
  handle_->owner = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&handle_->poll),
           [](uv_handle_t* h) { delete static_cast<Handle*>(h->data); });
  handle_ = nullptr;
}

// start(events): start, or change the events of, polling. Throws after close().
inline Napi::Value Poller::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t events;
  if (!ArgInt(info, 0, "events", 0, UV_READABLE | UV_WRITABLE | UV_DISCONNECT | UV_PRIORITIZED, &events)) {
    return env.Undefined();
  }
  if (handle_ == nullptr) {
    ThrowErrno(env, EBADF, "uv_poll_start", nullptr, "Poller is closed");
    return env.Undefined();
  }
  if (events == 0) {  // libuv treats no events as stop; keep `active_` in step with it
    Deactivate();
    return env.Undefined();
  }
  if (!SameFile()) {
    ThrowErrno(env, EBADF, "uv_poll_start", nullptr,
               "the fd was closed (or reused) since the Poller was made");
    return env.Undefined();
  }
  int err = uv_poll_start(&handle_->poll, static_cast<int>(events), OnPoll);
  if (err < 0) {
    Deactivate();  // uv_poll_start stops the handle before it fails
    ThrowErrno(env, -err, "uv_poll_start");
    return env.Undefined();
  }
  if (!active_) {
    active_ = true;
    Ref();
  }
  return env.Undefined();
}

// libuv aborts the process when epoll_ctl fails, which it would on a closed fd (EBADF) or on one
// reused for a regular file (EPERM): check before every start that the fd is still our file.
// (All eventfds share one anonymous inode, so reuse by another eventfd passes; libuv copes.)
inline bool Poller::SameFile() const {
  struct stat st;
  return fstat(fd_, &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_;
}

inline Napi::Value Poller::Stop(const Napi::CallbackInfo& info) {
  if (handle_ != nullptr) Deactivate();
  return info.Env().Undefined();
}

// close(): stop and release the handle (the fd stays open). Idempotent.
inline Napi::Value Poller::Close(const Napi::CallbackInfo& info) {
  if (handle_ != nullptr) {
    Deactivate();
    CloseHandle();
    callback_.Reset();
  }
  return info.Env().Undefined();
}

inline void Poller::OnPoll(uv_poll_t* poll, int status, int events) {
  Handle* handle = static_cast<Handle*>(poll->data);
  if (handle->owner != nullptr) handle->owner->Dispatch(status, events);
}

// Reads the eventfd counter so the level-triggered poll does not fire again for the same kick.
// Returns 0 with *value the counter (0 if there was nothing to read: a spurious wake-up), or the
// status that ends polling: UV_EOF at end of file (read() returned 0: a pipe without writers) or
// on UV_DISCONNECT, -errno for a read error. A pipe (QEMU's event notifiers fall back to one
// where eventfd is missing) may hand over fewer than 8 bytes: still a notification, value 1.
inline int Poller::Drain(int events, double* value) const {
  if ((events & UV_DISCONNECT) != 0) return UV_EOF;
  if ((events & UV_READABLE) == 0) return 0;
  uint64_t counter;
  ssize_t n = RetryEintr([&] { return read(fd_, &counter, sizeof counter); });
  if (n == sizeof counter) {
    *value = static_cast<double>(counter);
    return 0;
  }
  if (n > 0) {
    *value = 1;
    return 0;
  }
  if (n == 0) return UV_EOF;
  return errno == EAGAIN ? 0 : -errno;
}

// Calls callback(status, events, value) from the loop. status < 0 is a libuv error (UV_EBADF for
// POLLERR) or, for a draining poller, a hang-up (see the top of this file); either way the poller
// is stopped until start() is called again. MakeCallback runs the nextTick and microtask queues
// afterwards, as for any Node I/O callback. The callback may close() or stop() this Poller;
// nothing here touches the handle after the call.
inline void Poller::Dispatch(int status, int events) {
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  Napi::Object self = Value();  // pinned while active, so alive; from here the scope holds it
  Napi::Function callback = callback_.Value();
  double value = 0;
  if (drain_ && status == 0) status = Drain(events, &value);
  // On an error (POLLERR) libuv has stopped the handle itself; a hang-up found by Drain stops it here.
  if (status < 0) Deactivate();
  if (self.IsEmpty() || callback.IsEmpty()) return;
  callback.MakeCallback(self,
                        {Napi::Number::New(env, status), Napi::Number::New(env, events),
                         Napi::Number::New(env, value)},
                        *async_);
  // Nothing in JS can catch an exception thrown from a loop callback: make it an uncaught
  // exception ('uncaughtException', or the process exits), as Node's own handles do.
  if (env.IsExceptionPending()) {
    Napi::Error error = env.GetAndClearPendingException();
    napi_fatal_exception(env, error.Value());
  }
}

// Sets exports.Poller, and the libuv event bits its start() takes and its callback reports:
// POLL_READABLE, POLL_WRITABLE, POLL_DISCONNECT, POLL_PRIORITIZED, and UV_EOF (the status of a
// draining poller whose fd reached end of file).
inline void ExportPoller(Napi::Env env, Napi::Object exports) {
  exports.Set("Poller", Poller::Define(env));
  exports.Set("POLL_READABLE", Napi::Number::New(env, UV_READABLE));
  exports.Set("POLL_WRITABLE", Napi::Number::New(env, UV_WRITABLE));
  exports.Set("POLL_DISCONNECT", Napi::Number::New(env, UV_DISCONNECT));
  exports.Set("POLL_PRIORITIZED", Napi::Number::New(env, UV_PRIORITIZED));
  exports.Set("UV_EOF", Napi::Number::New(env, UV_EOF));
}

}  // namespace napi_util
