import Foundation

/// The hand-over between two stages running on different threads (capture → attribution → writer).
/// A capture thread never blocks (one that waits loses packets in the kernel), so `put` refuses and counts
/// when the queue is full; a later stage may wait for room with `putWaiting` instead (back-pressure).
public final class StageQueue<Element>: @unchecked Sendable {
    private let condition = NSCondition()
    private var items: [Element] = []
    private var _refused = 0
    public let capacity: Int

    public init(capacity: Int) { self.capacity = max(1, capacity) }

    /// Adds `e`; false (and counted) when the queue is full.
    @discardableResult
    public func put(_ e: Element) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard items.count < capacity else { _refused += 1; return false }
        items.append(e)
        return true
    }

    /// Adds `e`, waiting for room up to `timeout`; false (and counted) if there was none by then.
    @discardableResult
    public func putWaiting(_ e: Element, timeout: TimeInterval) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: timeout)
        while items.count >= capacity {
            if !condition.wait(until: deadline) { break }
        }
        guard items.count < capacity else { _refused += 1; return false }
        items.append(e)
        return true
    }

    /// Everything queued, oldest first.
    public func take() -> [Element] {
        condition.lock()
        defer { condition.unlock() }
        let out = items
        items.removeAll(keepingCapacity: items.count <= 4096)
        condition.broadcast()
        return out
    }

    public var refused: Int { condition.lock(); defer { condition.unlock() }; return _refused }
    public var isEmpty: Bool { condition.lock(); defer { condition.unlock() }; return items.isEmpty }
    public var count: Int { condition.lock(); defer { condition.unlock() }; return items.count }
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

/// A count kept by one thread and read by others.
public final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    public init() {}
    public func add(_ k: Int = 1) { lock.withLock { n += k } }
    public var value: Int { lock.withLock { n } }
}
