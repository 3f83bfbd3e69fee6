@testable import Attribution
import CallModel
import Core
import Foundation
import Testing

/// unshare(2), which Glibc's module does not show (it needs _GNU_SOURCE).
@_silgen_name("unshare") func unshareNamespace(_ flags: Int32) -> Int32

/// The kernel's connect-time records, on this machine's kernel: the program must load here (a failure
/// to load fails these tests, it does not skip them), and every record names the right process with a
/// complete tuple.
@Suite(.serialized) struct ConnectEventsTests {
    final class Running: @unchecked Sendable {
        let events: ConnectEvents
        let cookie: UInt64
        private let lock = NSLock()
        private var stop = false
        private let thread: Thread
        init() throws {
            events = try ConnectEvents.load(maxEntries: 4096)
            cookie = try #require(events.watchCurrentNamespace())
            let e = events
            let box = Box()
            thread = Thread { e.run(shouldStop: { box.stopped }) }
            self.box = box
            thread.start()
        }
        final class Box: @unchecked Sendable {
            private let lock = NSLock()
            private var value = false
            var stopped: Bool { lock.withLock { value } }
            func set() { lock.withLock { value = true } }
        }
        private let box: Box
        func finish() { box.set(); usleep(20_000) }
    }

    static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1e9) }

    /// A listening TCP socket on loopback (IPv4 or IPv6) and its port.
    static func listener(v6: Bool) throws -> (Int32, UInt16) {
        let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        if v6 {
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            a.sin6_addr = in6addr_loopback
            _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        } else {
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
            _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        listen(fd, 16)
        var st = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &st) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        let port = withUnsafeBytes(of: st) { raw in UInt16(raw[2]) << 8 | UInt16(raw[3]) }
        return (fd, port)
    }

    /// The local port of a connected socket.
    static func localPort(_ fd: Int32) -> UInt16 {
        var st = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &st) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return withUnsafeBytes(of: st) { raw in UInt16(raw[2]) << 8 | UInt16(raw[3]) }
    }

    static func connect(_ fd: Int32, v6: Bool, port: UInt16) -> Int32 {
        if v6 {
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            a.sin6_addr = in6addr_loopback
            a.sin6_port = port.bigEndian
            return withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        a.sin_port = port.bigEndian
        return withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    }

    @Test func tcpAndUDPConnectsAreRecordedWithTheCallerAndAFullTuple() throws {
        let r = try Running()
        defer { r.finish() }
        let me = Int(getpid())
        let loop4 = IPAddress(v4: 0x7f00_0001)
        let loop6 = IPAddress(high: 0, low: 1)
        var expected: [(UInt8, IPAddress, UInt16, IPAddress, UInt16)] = []
        for v6 in [false, true] {
            let (l, port) = try Self.listener(v6: v6)
            defer { close(l) }
            let c = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            let t = Self.now()
            #expect(Self.connect(c, v6: v6, port: port) == 0)
            let local = Self.localPort(c)
            let addr = v6 ? loop6 : loop4
            let rec = try #require(r.events.record(netns: r.cookie, proto: 6, client: addr, clientPort: local, server: addr,
                                                   serverPort: port, at: t, wait: 1_000_000_000))
            #expect(rec.process.pid == me)
            #expect(rec.process.startTime == ProcessTable.facts(me)?.startTime)
            #expect(abs(rec.time - t) < 1_000_000_000)
            expected.append((6, addr, local, addr, port))
            close(c)
        }
        // UDP, connected (as resolvers do) and not (sendto), IPv4 and IPv6, with the port bound only when
        // it sends; the record's time is the first datagram's.
        for (v6, connected) in [(false, true), (false, false), (true, true), (true, false)] {
            let u = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            let port: UInt16 = connected ? 9 : 7
            let addr = v6 ? loop6 : loop4
            usleep(30_000)
            let t = Self.now()
            let payload: [UInt8] = [1, 2, 3]
            if connected {
                #expect(Self.connect(u, v6: v6, port: port) == 0)
                _ = send(u, payload, 3, 0)
            } else if v6 {
                var a = sockaddr_in6()
                a.sin6_family = sa_family_t(AF_INET6)
                a.sin6_addr = in6addr_loopback
                a.sin6_port = port.bigEndian
                _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(u, payload, 3, 0, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
            } else {
                var a = sockaddr_in()
                a.sin_family = sa_family_t(AF_INET)
                a.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
                a.sin_port = port.bigEndian
                _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(u, payload, 3, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            }
            let local = Self.localPort(u)
            #expect(local != 0)
            let rec = try #require(r.events.record(netns: r.cookie, proto: 17, client: addr, clientPort: local, server: addr,
                                                   serverPort: port, at: t, wait: 1_000_000_000),
                                   "UDP v6 \(v6) connected \(connected)")
            #expect(rec.process.pid == me)
            #expect(abs(rec.time - t) < 20_000_000, "the first datagram's time")
            expected.append((17, addr, local, addr, port))
            close(u)
        }
        // A flow that starts on one of these tuples seconds later (a later socket reusing the port) is
        // not taken for the old record.
        usleep(1_600_000)
        for (proto, client, cport, server, sport) in expected {
            #expect(r.events.record(netns: r.cookie, proto: proto, client: client, clientPort: cport, server: server,
                                    serverPort: sport, at: Self.now()) == nil)
        }
        // No record of this namespace has an unbound port.
        #expect(r.events.allRecords.allSatisfy { $0.clientPort != 0 && $0.serverPort != 0 })
        #expect(r.events.counters.lost == 0)
    }

    /// A one-shot process that exits right after its connect is named, with its parent, even though
    /// it is gone before anyone looks.
    @Test func aProcessThatExitsAtOnceIsStillNamed() throws {
        let r = try Running()
        defer { r.finish() }
        let (l, port) = try Self.listener(v6: false)
        defer { close(l) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["-c", "import socket; s = socket.create_connection(('127.0.0.1', \(port))); print(s.getsockname()[1])"]
        let out = Pipe()
        p.standardOutput = out
        let t = Self.now()
        try p.run()
        p.waitUntilExit()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let local = try #require(UInt16(text.trimmingCharacters(in: .whitespacesAndNewlines)))
        let loop4 = IPAddress(v4: 0x7f00_0001)
        let end = Self.now()
        r.events.waitForRecords(before: end, wait: 1_000_000_000)
        // Looked up at the connection's own start, as the pipeline does (its SYN's time).
        let seen = try #require(r.events.allRecords.first { $0.clientPort == local && $0.serverPort == port })
        #expect(seen.time >= t - 20_000_000 && seen.time <= end)
        let rec = try #require(r.events.record(netns: r.cookie, proto: 6, client: loop4, clientPort: local, server: loop4,
                                               serverPort: port, at: seen.time))
        // A connection on this tuple seconds later is not taken for it.
        #expect(r.events.record(netns: r.cookie, proto: 6, client: loop4, clientPort: local, server: loop4,
                                serverPort: port, at: end + 2_000_000_000) == nil)
        #expect(rec.process.pid == Int(p.processIdentifier))
        #expect(rec.process.comm == "python3")
        #expect(rec.process.ppid == Int(getpid()))
        #expect(rec.lineage.dropFirst().first?.pid == Int(getpid()))
    }

    /// Connections of a namespace that is not watched are not recorded: here only a fresh namespace is
    /// watched while this process connects in its own; a connect inside the fresh one is recorded.
    @Test func otherNamespacesAreLeftOut() throws {
        let events = try ConnectEvents.load(maxEntries: 4096)
        let done = DispatchSemaphore(value: 0)
        let watched = Watched()
        let stop = Running.Box()
        let runner = Thread { events.run(shouldStop: { stop.stopped }) }
        runner.start()
        defer { stop.set(); usleep(20_000) }
        let inside = Watched()
        let t = Thread {
            defer { done.signal() }
            guard unshareNamespace(0x4000_0000) == 0 else { return } // CLONE_NEWNET, this thread only
            watched.set(events.watchCurrentNamespace())
            // Loopback up (a child forked from this thread shares its namespace), then one connect here.
            let ip = Process()
            ip.executableURL = URL(fileURLWithPath: "/sbin/ip")
            ip.arguments = ["link", "set", "lo", "up"]
            guard (try? ip.run()) != nil else { return }
            ip.waitUntilExit()
            guard let (l, port) = try? Self.listener(v6: false) else { return }
            let c = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            if Self.connect(c, v6: false, port: port) == 0 { inside.set(UInt64(Self.localPort(c))) }
            close(c)
            close(l)
        }
        t.start()
        done.wait()
        let other = try #require(watched.value)
        #expect(other != ConnectEvents.currentNamespaceCookie())
        let insidePort = try #require(inside.value)
        let (l, port) = try Self.listener(v6: false)
        defer { close(l) }
        let c = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(c) }
        #expect(Self.connect(c, v6: false, port: port) == 0)
        events.waitForRecords(before: Self.now(), wait: 1_000_000_000)
        // Exactly the connect made inside the watched namespace.
        let all = events.allRecords
        #expect(all.count == 1)
        #expect(all.first?.clientPort == UInt16(insidePort) && all.first?.process.pid == Int(getpid()))
        #expect(events.record(netns: ConnectEvents.currentNamespaceCookie(), proto: 6, client: IPAddress(v4: 0x7f00_0001),
                              clientPort: Self.localPort(c), server: IPAddress(v4: 0x7f00_0001), serverPort: port,
                              at: Self.now()) == nil)
    }

    final class Watched: @unchecked Sendable {
        private let lock = NSLock()
        private var cookie: UInt64?
        var value: UInt64? { lock.withLock { cookie } }
        func set(_ c: UInt64?) { lock.withLock { cookie = c } }
    }
}
