# The native addon: one thin C++ file, one call per syscall (see server/native/daxd_native.cc).
# Built by `npm install` (the "install" script runs node-gyp rebuild) into
# build/Release/daxd_native.node, which server/native/index.ts loads.
{
  "targets": [
    {
      "target_name": "daxd_native",
      "sources": ["server/native/daxd_native.cc"],
      "include_dirs": ["<!@(node -p \"require('node-addon-api').include\")"],
      # Napi::Error is thrown as a C++ exception and becomes the JS exception at the boundary.
      "defines": ["NAPI_CPP_EXCEPTIONS", "NAPI_VERSION=8"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra"]
    }
  ]
}
