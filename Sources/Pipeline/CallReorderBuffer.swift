import CallModel

/// Completed calls held until nothing earlier can still appear, then released in order of start time
/// (ties in order of completion). A binary heap of small keys over parked records: each record is moved
/// once in and once out however long a slow connection holds the watermark back.
struct CallReorderBuffer {
    private struct Key {
        var ts: Int64
        var sequence: Int
        var slot: Int

        func precedes(_ other: Key) -> Bool {
            ts != other.ts ? ts < other.ts : sequence < other.sequence
        }
    }

    private var heap: [Key] = []
    private var slots: [CallRecord?] = []
    private var freeSlots: [Int] = []
    private var sequence = 0

    var isEmpty: Bool { heap.isEmpty }
    var count: Int { heap.count }

    mutating func insert(_ record: consuming CallRecord) {
        let ts = record.ts
        let slot: Int
        if let free = freeSlots.popLast() {
            slot = free
            slots[slot] = record
        } else {
            slot = slots.count
            slots.append(record)
        }
        heap.append(Key(ts: ts, sequence: sequence, slot: slot))
        sequence += 1
        siftUp(heap.count - 1)
    }

    /// Removes and returns the earliest call if it starts before `watermark` (every call when it is `.max`).
    mutating func popEarliest(before watermark: Int64) -> CallRecord? {
        guard let top = heap.first, top.ts < watermark || watermark == .max else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            siftDown(0)
        }
        let record = slots[top.slot].take()
        freeSlots.append(top.slot)
        if heap.isEmpty {
            // Drained: give back what a burst grew.
            slots.removeAll(keepingCapacity: slots.count <= 1024)
            freeSlots.removeAll(keepingCapacity: freeSlots.count <= 1024)
        }
        return record
    }

    private mutating func siftUp(_ index: Int) {
        var child = index
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].precedes(heap[parent]) else { return }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ index: Int) {
        var parent = index
        while true {
            let left = 2 * parent + 1, right = left + 1
            var first = parent
            if left < heap.count && heap[left].precedes(heap[first]) { first = left }
            if right < heap.count && heap[right].precedes(heap[first]) { first = right }
            if first == parent { return }
            heap.swapAt(parent, first)
            parent = first
        }
    }
}
