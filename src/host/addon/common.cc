// The argument check of this addon alone (the shared ones are in vhost-user-ts's napi-util.h).
#include "common.h"

namespace hn {

bool ArgFamily(const Napi::CallbackInfo& info, size_t index, int* out) {
  int64_t family;
  if (!ArgInt(info, index, "family", 4, 6, &family)) return false;
  if (family == 5) {
    Napi::RangeError::New(info.Env(), "family must be 4 or 6").ThrowAsJavaScriptException();
    return false;
  }
  *out = static_cast<int>(family);
  return true;
}

}  // namespace hn
