import Foundation

/// The hand-over between two stages running on different threads (capture → attribution → writer):
/// producers never block (a capture thread that waits loses packets in the kernel), so the queue is
/// bounded and what it refuses is counted.
public final class StageQueue<Element>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [Element] = []
    private var _refused = 0
    public let capacity: Int

    public init(capacity: Int) { self.capacity = max(1, capacity) }

    /// Adds `e`; false (and counted) when the queue is full.
    @discardableResult
    public func put(_ e: Element) -> Bool {
        lock.withLock {
            guard items.count < capacity else { _refused += 1; return false }
            items.append(e)
            return true
        }
    }

    /// Everything queued, oldest first.
    public func take() -> [Element] {
        lock.withLock {
            defer { items.removeAll(keepingCapacity: items.count <= 4096) }
            return items
        }
    }

    public var refused: Int { lock.withLock { _refused } }
    public var isEmpty: Bool { lock.withLock { items.isEmpty } }
}

/// A value set once by one thread and awaited by tasks; a waiting task that is cancelled stops waiting.
final class OneShot<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value?
    private var waiters: [Int: CheckedContinuation<Value?, Never>] = [:]
    private var nextWaiter = 0

    func set(_ v: Value) {
        let ready: [CheckedContinuation<Value?, Never>] = lock.withLock {
            guard value == nil else { return [] }
            value = v
            defer { waiters = [:] }
            return Array(waiters.values)
        }
        for w in ready { w.resume(returning: v) }
    }

    /// The value, or nil if the task was cancelled first.
    func wait() async -> Value? {
        let id = lock.withLock { () -> Int in nextWaiter += 1; return nextWaiter }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Value?, Never>) in
                let now: Value?? = lock.withLock {
                    if let value { return .some(value) }
                    if Task.isCancelled { return .some(nil) }
                    waiters[id] = c
                    return nil
                }
                if let now { c.resume(returning: now) }
            }
        } onCancel: {
            let waiter = lock.withLock { waiters.removeValue(forKey: id) }
            waiter?.resume(returning: nil)
        }
    }
}
