{
  "targets": [
    {
      "target_name": "vunet_hostnet",
      "sources": ["src/host/addon/addon.cc", "src/host/addon/common.cc", "src/host/addon/sockets.cc", "src/host/addon/confine.cc", "src/host/addon/checksum.cc", "src/host/addon/stream.cc", "src/host/addon/poller.cc"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!(node -p \"require('path').join(require('path').dirname(require.resolve('vhost-user-ts/package.json')), 'native', 'include')\")"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra"]
    }
  ]
}
