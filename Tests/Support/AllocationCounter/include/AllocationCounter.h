#ifndef CALLTAP_ALLOCATION_COUNTER_H
#define CALLTAP_ALLOCATION_COUNTER_H
// Counts heap allocations made by the calling thread between start and stop, by interposing the C
// allocator for the test process (every Swift object, array and string buffer comes through it).
void calltap_allocations_start(void);
/// Returns the allocations counted since start.
long calltap_allocations_stop(void);
#endif
