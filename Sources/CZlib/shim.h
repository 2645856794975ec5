// zlib for the pprof encoder (gzip) and its tests (gunzip). deflateInit2 and inflateInit2
// are macros that pass ZLIB_VERSION and sizeof(z_stream), so Swift cannot call them;
// these inline wrappers can.
#ifndef TRICOLOR_CZLIB_SHIM_H
#define TRICOLOR_CZLIB_SHIM_H

#include <zlib.h>

/// deflateInit2 producing a gzip stream (windowBits 15 + 16), default level and strategy.
static inline int tricolor_deflateInitGzip(z_streamp strm) {
    return deflateInit2(strm, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
}

/// inflateInit2 accepting zlib or gzip streams (windowBits 15 + 32: detect the header).
static inline int tricolor_inflateInitAuto(z_streamp strm) {
    return inflateInit2(strm, 15 + 32);
}

#endif
