# Builds native/build/Release/ferry.node: Ferry's thin node-addon-api layer over libbpf,
# namespace-aware sockets, pod routing over rtnetlink and
# descriptor passing over Unix sockets for the agent hand-over.
# `npm run build:native` (node-gyp rebuild --directory native).
{
  "targets": [
    {
      "target_name": "ferry",
      "sources": [
        "src/addon.cc",
        "src/errors.cc",
        "src/handover.cc",
        "src/libbpf-log.cc",
        "src/netns.cc",
        "src/pod-routing.cc",
        "src/rtnetlink.cc",
        "src/sockets.cc",
        "src/probe.cc",
        "src/bpf-object.cc",
        "src/bpf-map.cc",
        "src/bpf-link.cc"
      ],
      # C++ exceptions on: Napi::Error is thrown as a C++ exception and node-addon-api turns it
      # into a JS exception at the call boundary (NAPI_CPP_EXCEPTIONS, from except.gypi).
      "dependencies": [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
      ],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
      "cflags_cc!": ["-std=gnu++17", "-fno-rtti"],
      # Debian's libbpf 1.x (libbpf-dev), which needs libelf and zlib.
      "libraries": ["-lbpf", "-lelf", "-lz"]
    }
  ]
}
