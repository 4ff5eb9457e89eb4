// daxd_native: the system calls daxd makes on its volume file, one JS function per call,
// no policy. The idiomatic class lives above it, in server/media/mmap-storage.ts.
//
// Errors: a failing call throws a JS Error shaped like Node's fs errors, e.g. message
// "ENOENT: no such file or directory, open '/x'", err.code 'ENOENT', err.errno 2 (the
// positive C errno, not Node's negative libuv number), err.syscall 'open', err.path '/x'.
// Misused arguments throw TypeError/RangeError (bugs in the caller, not syscall failures).
// Sizes and offsets are JS numbers holding non-negative safe integers.
//
// Mappings: mmap() returns an external ArrayBuffer over the mapped pages (no copy). A
// Mapping record is shared by the buffer's finalizer and by every msync in flight on it;
// munmap() detaches the buffer before unmapping, so JS can never reach unmapped memory,
// and if an msync is still running, the pages are unmapped only when the last one returns
// (~Mapping). A buffer that is garbage-collected without munmap() is unmapped then.

#include <napi.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cmath>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace {

// ---- errno -> JS Error ----

std::string ErrnoName(int err) {
  const char* name = strerrorname_np(err);  // glibc >= 2.32
  return name != nullptr ? name : "E" + std::to_string(err);
}

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall,
                       const std::string& path = "", const std::string& code = "") {
  const char* desc = strerrordesc_np(err);  // thread-safe, unlike strerror()
  std::string text = desc != nullptr ? desc : "unknown error";
  if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  std::string name = code.empty() ? ErrnoName(err) : code;
  std::string message = name + ": " + text + ", " + syscall;
  if (!path.empty()) message += " '" + path + "'";
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", name);
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("syscall", syscall);
  if (!path.empty()) error.Set("path", path);
  return error;
}

// ---- arguments ----

constexpr double kMaxSafeInteger = 9007199254740991.0;  // 2^53 - 1

int64_t ArgSize(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
  double value = info[i].As<Napi::Number>().DoubleValue();
  if (!(value >= 0 && value <= kMaxSafeInteger && std::floor(value) == value)) {
    throw Napi::RangeError::New(info.Env(), std::string(name) + " must be a non-negative safe integer");
  }
  return static_cast<int64_t>(value);
}

int ArgFd(const Napi::CallbackInfo& info, size_t i) {
  int64_t fd = ArgSize(info, i, "fd");
  if (fd > INT32_MAX) throw Napi::RangeError::New(info.Env(), "fd out of range");
  return static_cast<int>(fd);
}

std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsString()) throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

// ---- mappings ----

struct Mapping {
  uint8_t* addr = nullptr;
  size_t lengthBytes = 0;
  int msyncsInFlight = 0;  // touched on the JS thread only (worker constructor/destructor)
  bool unmapped = false;
  ~Mapping();
};

// Attached mappings by address, so a buffer passed back from JS finds its record. Weak:
// the owners are the buffer's finalizer and the msync workers. Guarded for worker threads.
std::mutex registryMutex;
std::unordered_map<void*, std::weak_ptr<Mapping>> registry;

Mapping::~Mapping() {
  {
    std::lock_guard<std::mutex> lock(registryMutex);
    auto it = registry.find(addr);
    // Only our own (now expired) entry: after munmap() the address may belong to a new mapping.
    if (it != registry.end() && it->second.expired()) registry.erase(it);
  }
  if (!unmapped) ::munmap(addr, lengthBytes);  // garbage-collected, or munmap() deferred behind msync
}

void FinalizeMapping(napi_env, void*, void* hint) { delete static_cast<std::shared_ptr<Mapping>*>(hint); }

std::shared_ptr<Mapping> LookupMapping(const Napi::CallbackInfo& info, const char* syscall) {
  if (!info[0].IsArrayBuffer()) throw Napi::TypeError::New(info.Env(), "mapping must be an ArrayBuffer from mmap()");
  Napi::ArrayBuffer buffer = info[0].As<Napi::ArrayBuffer>();
  std::shared_ptr<Mapping> mapping;
  if (buffer.Data() != nullptr) {
    std::lock_guard<std::mutex> lock(registryMutex);
    auto it = registry.find(buffer.Data());
    if (it != registry.end()) mapping = it->second.lock();
  }
  // A detached buffer (already unmapped) or one that mmap() did not return.
  if (!mapping || mapping->lengthBytes != buffer.ByteLength()) throw ErrnoError(info.Env(), EINVAL, syscall);
  return mapping;
}

// [offsetBytes, +lengthBytes) of the mapping, with the start rounded down to a page as
// msync(2) and madvise(2) require.
struct PageRange {
  std::shared_ptr<Mapping> mapping;
  uint8_t* start;
  size_t lengthBytes;
};

PageRange ArgPageRange(const Napi::CallbackInfo& info, const char* syscall) {
  std::shared_ptr<Mapping> mapping = LookupMapping(info, syscall);
  uint64_t offset = ArgSize(info, 1, "offsetBytes");
  uint64_t length = ArgSize(info, 2, "lengthBytes");
  if (offset + length > mapping->lengthBytes) {
    throw Napi::RangeError::New(info.Env(), std::string(syscall) + " range is outside the mapping");
  }
  uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  uint64_t aligned = offset - offset % page;
  return {mapping, mapping->addr + aligned, static_cast<size_t>(offset + length - aligned)};
}

// ---- the calls ----

// int open(const char *pathname, int flags, mode_t mode);
//   'rw': O_RDWR|O_CLOEXEC. 'create': adds O_CREAT|O_EXCL (never resizes an existing
//   volume, which another process may have mapped), then
// int ftruncate(int fd, off_t length);
//   sets the size without writing a byte (the file is sparse); on failure the new file is removed.
Napi::Value Open(const Napi::CallbackInfo& info) {
  std::string path = ArgString(info, 0, "path");
  std::string flags = ArgString(info, 1, "flags");
  bool create = flags == "create";
  if (!create && flags != "rw") throw Napi::TypeError::New(info.Env(), "flags must be 'rw' or 'create'");
  int64_t sizeBytes = create ? ArgSize(info, 2, "sizeBytes") : 0;
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0), 0600);
  if (fd < 0) throw ErrnoError(info.Env(), errno, "open", path);
  if (create && ::ftruncate(fd, sizeBytes) != 0) {
    int err = errno;
    ::close(fd);
    ::unlink(path.c_str());  // O_EXCL: the file is ours
    throw ErrnoError(info.Env(), err, "ftruncate", path);
  }
  return Napi::Number::New(info.Env(), fd);
}

// int close(int fd);
Napi::Value Close(const Napi::CallbackInfo& info) {
  if (::close(ArgFd(info, 0)) != 0) throw ErrnoError(info.Env(), errno, "close");
  return info.Env().Undefined();
}

// int fstat(int fd, struct stat *statbuf);  returns st_size
Napi::Value FstatSize(const Napi::CallbackInfo& info) {
  struct stat st;
  if (::fstat(ArgFd(info, 0), &st) != 0) throw ErrnoError(info.Env(), errno, "fstat");
  return Napi::Number::New(info.Env(), static_cast<double>(st.st_size));
}

// int flock(int fd, int operation);  operation = LOCK_EX|LOCK_NB
//   A lock held elsewhere throws code 'EWOULDBLOCK' (Linux names that errno EAGAIN).
Napi::Value Flock(const Napi::CallbackInfo& info) {
  if (::flock(ArgFd(info, 0), LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    throw ErrnoError(info.Env(), err, "flock", "", err == EWOULDBLOCK ? "EWOULDBLOCK" : "");
  }
  return info.Env().Undefined();
}

// void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset);
//   addr NULL, prot PROT_READ|PROT_WRITE, flags MAP_SHARED. Returns an external ArrayBuffer.
Napi::Value Mmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  int64_t offset = ArgSize(info, 1, "offsetBytes");
  int64_t length = ArgSize(info, 2, "lengthBytes");
  void* addr = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
  if (addr == MAP_FAILED) throw ErrnoError(env, errno, "mmap");
  auto mapping = std::make_shared<Mapping>();
  mapping->addr = static_cast<uint8_t*>(addr);
  mapping->lengthBytes = static_cast<size_t>(length);
  {
    std::lock_guard<std::mutex> lock(registryMutex);
    registry[addr] = mapping;
  }
  // The finalizer owns `hint`. Node may run the finalizer even when creation fails (it does
  // for buffers over its maximum length), so on failure we only drop our own reference: the
  // pages are unmapped when the last owner goes.
  auto* hint = new std::shared_ptr<Mapping>(mapping);
  napi_value buffer;
  napi_status status = napi_create_external_arraybuffer(env, addr, length, FinalizeMapping, hint, &buffer);
  if (status != napi_ok) throw Napi::Error::New(env);
  return Napi::Value(env, buffer);
}

// int munmap(void *addr, size_t length);  of the whole mapping; detaches the ArrayBuffer first.
Napi::Value Munmap(const Napi::CallbackInfo& info) {
  std::shared_ptr<Mapping> mapping = LookupMapping(info, "munmap");
  info[0].As<Napi::ArrayBuffer>().Detach();  // from here no JS view reaches the pages
  {
    std::lock_guard<std::mutex> lock(registryMutex);
    registry.erase(mapping->addr);
  }
  if (mapping->msyncsInFlight > 0) return info.Env().Undefined();  // the last one unmaps (~Mapping)
  if (::munmap(mapping->addr, mapping->lengthBytes) != 0) throw ErrnoError(info.Env(), errno, "munmap");
  mapping->unmapped = true;
  return info.Env().Undefined();
}

class MsyncWorker : public Napi::AsyncWorker {
 public:
  MsyncWorker(Napi::Env env, PageRange range)
      : Napi::AsyncWorker(env, "daxd:msync"), deferred_(Napi::Promise::Deferred::New(env)), range_(std::move(range)) {
    range_.mapping->msyncsInFlight++;
  }
  ~MsyncWorker() override { range_.mapping->msyncsInFlight--; }  // JS thread, after OnOK/OnError
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {  // libuv thread pool: only the syscall, no JS
    if (::msync(range_.start, range_.lengthBytes, MS_SYNC) != 0) {
      errno_ = errno;
      SetError("msync");
    }
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error&) override { deferred_.Reject(ErrnoError(Env(), errno_, "msync").Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  PageRange range_;
  int errno_ = 0;
};

// int msync(void *addr, size_t length, int flags);  flags = MS_SYNC, run on the libuv thread
//   pool; returns a Promise. The start is rounded down to a page.
Napi::Value Msync(const Napi::CallbackInfo& info) {
  auto* worker = new MsyncWorker(info.Env(), ArgPageRange(info, "msync"));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// int msync(void *addr, size_t length, int flags);  flags = MS_SYNC, blocking the JS thread.
Napi::Value MsyncSync(const Napi::CallbackInfo& info) {
  PageRange range = ArgPageRange(info, "msync");
  if (::msync(range.start, range.lengthBytes, MS_SYNC) != 0) throw ErrnoError(info.Env(), errno, "msync");
  return info.Env().Undefined();
}

// int madvise(void *addr, size_t length, int advice);  advice = MADV_WILLNEED, MADV_DONTNEED,
//   MADV_RANDOM or MADV_SEQUENTIAL. The start is rounded down to a page.
Napi::Value Madvise(const Napi::CallbackInfo& info) {
  PageRange range = ArgPageRange(info, "madvise");
  std::string name = ArgString(info, 3, "advice");
  int advice = name == "willneed" ? MADV_WILLNEED
             : name == "dontneed" ? MADV_DONTNEED
             : name == "random" ? MADV_RANDOM
             : name == "sequential" ? MADV_SEQUENTIAL : -1;
  if (advice < 0) throw Napi::TypeError::New(info.Env(), "advice must be 'willneed', 'dontneed', 'random' or 'sequential'");
  if (::madvise(range.start, range.lengthBytes, advice) != 0) throw ErrnoError(info.Env(), errno, "madvise");
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("fstatSize", Napi::Function::New(env, FstatSize, "fstatSize"));
  exports.Set("flock", Napi::Function::New(env, Flock, "flock"));
  exports.Set("mmap", Napi::Function::New(env, Mmap, "mmap"));
  exports.Set("munmap", Napi::Function::New(env, Munmap, "munmap"));
  exports.Set("msync", Napi::Function::New(env, Msync, "msync"));
  exports.Set("msyncSync", Napi::Function::New(env, MsyncSync, "msyncSync"));
  exports.Set("madvise", Napi::Function::New(env, Madvise, "madvise"));
  return exports;
}

}  // namespace

NODE_API_MODULE(daxd_native, Init)
