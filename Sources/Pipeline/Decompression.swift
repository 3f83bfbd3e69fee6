import CDecompress

/// Undoes `Content-Encoding` (gzip, x-gzip, deflate, br) of a body held in memory, producing at most
/// `limit` bytes: a body that inflates beyond it (a decompression bomb, or just a long answer) gives
/// nil, never more memory. Pure: bytes in, bytes out.
public enum Decompression {
    public static func decode(_ body: [UInt8], encoding: String?, limit: Int) -> [UInt8]? {
        guard let encoding, !encoding.isEmpty, encoding != "identity" else { return body }
        switch encoding {
        case "gzip", "x-gzip": return inflate(body, windowBits: 15 + 16, limit: limit)
        case "deflate": return inflate(body, windowBits: 15, limit: limit) ?? inflate(body, windowBits: -15, limit: limit)
        case "br": return brotli(body, limit: limit)
        default: return nil
        }
    }

    static func inflate(_ input: [UInt8], windowBits: Int32, limit: Int) -> [UInt8]? {
        guard !input.isEmpty else { return [] }
        var stream = z_stream()
        guard calltap_inflate_init(&stream, windowBits) == Z_OK else { return nil }
        defer { inflateEnd(&stream) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        var input = input
        let status: Int32 = input.withUnsafeMutableBufferPointer { inBuf in
            stream.next_in = inBuf.baseAddress
            stream.avail_in = uInt(inBuf.count)
            var code: Int32 = Z_OK
            while code == Z_OK {
                code = chunk.withUnsafeMutableBufferPointer { c in
                    stream.next_out = c.baseAddress
                    stream.avail_out = uInt(c.count)
                    let r = CDecompress.inflate(&stream, Z_NO_FLUSH)
                    let produced = c.count - Int(stream.avail_out)
                    out.append(contentsOf: c.prefix(produced))
                    return r
                }
                if out.count > limit { return Z_MEM_ERROR }
                if code == Z_BUF_ERROR && stream.avail_in == 0 { break } // truncated: keep what came out
            }
            return code
        }
        return status == Z_STREAM_END || status == Z_BUF_ERROR ? out : nil
    }

    static func brotli(_ input: [UInt8], limit: Int) -> [UInt8]? {
        guard !input.isEmpty, let state = BrotliDecoderCreateInstance(nil, nil, nil) else { return nil }
        defer { BrotliDecoderDestroyInstance(state) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        var result = BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT
        input.withUnsafeBufferPointer { inBuf in
            var availIn = inBuf.count
            var nextIn: UnsafePointer<UInt8>? = inBuf.baseAddress
            while result == BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT {
                chunk.withUnsafeMutableBufferPointer { c in
                    var availOut = c.count
                    var nextOut: UnsafeMutablePointer<UInt8>? = c.baseAddress
                    result = BrotliDecoderDecompressStream(state, &availIn, &nextIn, &availOut, &nextOut, nil)
                    out.append(contentsOf: c.prefix(c.count - availOut))
                }
                if out.count > limit { result = BROTLI_DECODER_RESULT_ERROR }
            }
        }
        return result == BROTLI_DECODER_RESULT_SUCCESS || result == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT ? out : nil
    }
}
