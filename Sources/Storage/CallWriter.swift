import CallModel
import Foundation

/// The database as a sink: calls are inserted in batches (one transaction each); calls the database
/// refuses (disk full, read-only, locked) are held, up to `maxHeld`, and tried again with the next
/// write. The first failure and the recovery are reported once each; calls dropped at the cap are
/// counted in `notStored`. `read --db` and `capture --db` both write through it. Calls are written by one
/// task at a time; the counters may be read from any thread.
public final class CallWriter: CallSink, @unchecked Sendable {
    public let store: CallStore
    public let sinkName = "database"
    /// Calls held while the database refuses writes; beyond it the oldest are dropped (counted).
    public let maxHeld: Int
    /// Rows per transaction, so a large backlog never holds the write lock for long.
    public let batchSize: Int
    private let lock = NSLock()
    private var counts = (stored: 0, notStored: 0, held: 0)
    public var stored: Int { lock.withLock { counts.stored } }
    /// Calls dropped because the database refused them for longer than `maxHeld` calls.
    public var notStored: Int { lock.withLock { counts.notStored } }
    /// Calls waiting for the database to take them.
    public var held: Int { lock.withLock { counts.held } }
    /// Told of the first failure after a success (with the error), and of the recovery (with the number
    /// of held calls stored).
    public var onFailure: (any Error) -> Void = { _ in }
    public var onRecovery: (Int) -> Void = { _ in }

    private var pending: [CallRecord] = []
    private var failing = false

    public init(store: CallStore, maxHeld: Int, batchSize: Int = 5_000) {
        self.store = store
        self.maxHeld = max(1, maxHeld)
        self.batchSize = max(1, batchSize)
    }

    /// Stores `calls` after any held ones; never throws for a refusing database (the calls are held).
    public func write(_ calls: [CallRecord]) {
        pending += calls
        drain()
    }

    /// Tries the held calls once more; throws if some are still not stored.
    public func flush() throws {
        drain()
        if failing, !pending.isEmpty { throw NotStored(count: pending.count) }
    }

    public struct NotStored: Error, CustomStringConvertible {
        public var count: Int
        public var description: String { "\(count) calls could not be stored" }
    }

    private func drain() {
        let before = pending.count
        var done = 0
        var dropped = 0
        do {
            while done < pending.count {
                let end = min(pending.count, done + batchSize)
                try store.insert(Array(pending[done..<end]))
                done = end
            }
            pending.removeAll(keepingCapacity: pending.count <= batchSize)
            if failing {
                failing = false
                onRecovery(before)
            }
        } catch {
            pending.removeFirst(done)
            if !failing { onFailure(error) }
            failing = true
            if pending.count > maxHeld {
                dropped = pending.count - maxHeld
                pending.removeFirst(dropped)
            }
        }
        let held = pending.count
        lock.withLock {
            counts.stored += done
            counts.notStored += dropped
            counts.held = held
        }
    }
}
