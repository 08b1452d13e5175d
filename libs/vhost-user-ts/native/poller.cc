// The addon's Poller: the class of include/vhost-user-ts/poller.h (shared with the addons of
// programs built on vhost-user-ts), registered on the exports.
#include "common.h"
#include "vhost-user-ts/poller.h"

namespace vu {

void InitPoller(Napi::Env env, Napi::Object exports) { napi_util::ExportPoller(env, exports); }

}  // namespace vu
