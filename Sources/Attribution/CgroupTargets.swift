import Foundation

/// A cgroup v2 as a capture target: its processes, and the network namespaces they use.
public enum CgroupTargets {
    /// Where cgroup v2 is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid systems).
    public static func mountPoint() -> String? {
        guard let mounts = ProcFile.read("/proc/self/mounts") else { return nil }
        for line in mounts.split(separator: "\n") {
            let f = line.split(separator: " ")
            if f.count >= 3, f[2] == "cgroup2" { return String(f[1]) }
        }
        return nil
    }

    /// The cgroup's path as /proc/PID/cgroup shows it ("/agents/a1"), from a path given absolute
    /// (under the mount) or relative to it.
    public static func relativePath(_ given: String, mount: String) -> String {
        var p = given
        if p.hasPrefix(mount) { p = String(p.dropFirst(mount.count)) }
        if !p.hasPrefix("/") { p = "/" + p }
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p
    }

    /// Processes in the cgroup and its descendants.
    public static func processes(mount: String, cgroup: String) -> [Int] {
        var out: [Int] = []
        var queue = [mount + cgroup]
        while let dir = queue.popLast() {
            if let procs = ProcFile.read(dir + "/cgroup.procs") {
                out += procs.split(separator: "\n").compactMap { Int($0) }
            }
            let children = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
            for c in children {
                var isDir: ObjCBool = false
                if FileManager.default.fileExists(atPath: dir + "/" + c, isDirectory: &isDir), isDir.boolValue {
                    queue.append(dir + "/" + c)
                }
            }
        }
        return out
    }

    /// One /proc/PID/ns/net path per distinct network namespace the cgroup's processes use.
    public static func namespaces(of pids: [Int]) -> [String] {
        var seen: [String: String] = [:]
        for pid in pids.sorted() {
            guard let ns = ProcessTracker.link("/proc/\(pid)/ns/net"), seen[ns] == nil else { continue }
            seen[ns] = "/proc/\(pid)/ns/net"
        }
        return seen.values.sorted()
    }

    /// Whether a process's cgroup (as in /proc/PID/cgroup) lies inside `cgroup`.
    public static func contains(_ cgroup: String, member: String?) -> Bool {
        guard let m = member else { return false }
        return cgroup == "/" || m == cgroup || m.hasPrefix(cgroup + "/")
    }
}
