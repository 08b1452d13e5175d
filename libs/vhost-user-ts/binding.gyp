{
  "targets": [
    {
      "target_name": "vhost_user_native",
      "sources": ["native/addon.cc", "native/guard.cc", "native/io.cc", "native/mapping.cc", "native/poller.cc", "native/ring.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "native/include"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra"]
    }
  ]
}
