import CFuzzDriver
import Foundation
import FuzzTargets

/// The target chosen on the command line; libFuzzer's callback is a C function and cannot capture it.
nonisolated(unsafe) private var selected: FuzzTarget?

private let testOneInput: calltap_fuzz_callback = { data, size in
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    selected?.run(bytes)
    return 0
}

/// Exported under libFuzzer's name too, which `-sanitize=fuzzer` expects to find.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    testOneInput(data, size)
}

@main
enum CalltapFuzz {
    static func main() {
        let args = CommandLine.arguments
        let usage = """
            usage: calltap-fuzz TARGET [libFuzzer options] [corpus dirs or files]
                   calltap-fuzz seeds OUTPUT_DIR CAPTURE...   (writes seed inputs for every target)
            targets:
            """ + fuzzTargets.map { "\n  \($0.name.padding(toLength: 10, withPad: " ", startingAt: 0)) \($0.summary)" }.joined()
        guard args.count >= 2 else {
            FileHandle.standardError.write(Data((usage + "\n").utf8))
            exit(2)
        }
        if args[1] == "seeds" {
            guard args.count >= 3 else { FileHandle.standardError.write(Data((usage + "\n").utf8)); exit(2) }
            SeedMaker(output: args[2]).make(from: Array(args.dropFirst(3)))
            return
        }
        // The target is named first; libFuzzer sees the rest. It is also left in the environment, because
        // -merge, -fork and -jobs start this binary again with libFuzzer's arguments only.
        var fuzzerArgs = [args[0]] + args.dropFirst(2)
        var name = args[1]
        if fuzzTargets.first(where: { $0.name == name }) == nil, let inherited = ProcessInfo.processInfo.environment["CALLTAP_FUZZ_TARGET"] {
            name = inherited
            fuzzerArgs = args
        }
        guard let target = fuzzTargets.first(where: { $0.name == name }) else {
            FileHandle.standardError.write(Data("calltap-fuzz: unknown target \(args[1])\n\(usage)\n".utf8))
            exit(2)
        }
        setenv("CALLTAP_FUZZ_TARGET", name, 1)
        selected = target
        let cArgs: [UnsafeMutablePointer<CChar>?] = fuzzerArgs.map { strdup($0) }
        var argv = cArgs
        let rc = argv.withUnsafeMutableBufferPointer { buffer in
            calltap_run_fuzzer(Int32(buffer.count), buffer.baseAddress, testOneInput)
        }
        if rc == -1 {
            FileHandle.standardError.write(Data("calltap-fuzz: built without -sanitize=fuzzer (use Scripts/fuzz)\n".utf8))
            exit(2)
        }
        unlink(fuzzScratchFile)
        exit(rc)
    }
}
