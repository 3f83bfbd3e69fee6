/// Capture time in nanoseconds since the Unix epoch (pcapng may carry ns; pcap carries µs).
public typealias Nanos = Int64

extension Nanos {
    /// `self - earlier`, saturating at Int64's bounds instead of trapping: capture times come from the
    /// input (per-interface offsets, damaged records), so any two of them may be ±9.2e18 ns apart.
    @inlinable public func minus(_ earlier: Nanos) -> Nanos {
        let (d, overflow) = subtractingReportingOverflow(earlier)
        return overflow ? (earlier > self ? .min : .max) : d
    }

    /// Microseconds from `start` to `self`, saturating (a duration for a call record).
    @inlinable public func micros(since start: Nanos) -> Int64 { minus(start) / 1000 }
}

/// A record's timestamp (seconds and the fraction libpcap scaled to nanoseconds) as `Nanos`, or nil when
/// a damaged or hostile file gives one outside what Int64 nanoseconds can hold (about the years 1678–2262).
@inline(__always) public func captureNanos(seconds: Int, fraction: Int) -> Nanos? {
    let (whole, overflow) = Nanos(seconds).multipliedReportingOverflow(by: 1_000_000_000)
    guard !overflow else { return nil }
    let (total, overflow2) = whole.addingReportingOverflow(Nanos(fraction))
    return overflow2 ? nil : total
}
