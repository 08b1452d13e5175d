// The addon's Poller, for the host sockets and the edge-triggered epoll set: the class of
// vhost-user-ts's include/vhost-user-ts/poller.h, one source for both addons.
#include "common.h"
#include "vhost-user-ts/poller.h"

namespace hn {

void InitPoller(Napi::Env env, Napi::Object exports) { napi_util::ExportPoller(env, exports); }

}  // namespace hn
