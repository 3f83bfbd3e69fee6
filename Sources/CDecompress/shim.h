#ifndef CALLTAP_CDECOMPRESS_SHIM_H
#define CALLTAP_CDECOMPRESS_SHIM_H
// zlib (gzip, deflate) and Brotli decoders, for LLM API bodies sent compressed.
#include <zlib.h>
#include <brotli/decode.h>

// inflateInit2 is a macro; Swift cannot call it.
static inline int calltap_inflate_init(z_stream *s, int windowBits) {
    return inflateInit2(s, windowBits);
}
#endif
