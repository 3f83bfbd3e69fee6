#ifndef CALLTAP_FUZZ_DRIVER_H
#define CALLTAP_FUZZ_DRIVER_H
#include <stddef.h>
#include <stdint.h>

typedef int (*calltap_fuzz_callback)(const uint8_t *data, size_t size);

/// Runs libFuzzer's driver with the given arguments; returns -1 when the binary was built without
/// `-sanitize=fuzzer` (the driver is then absent).
int calltap_run_fuzzer(int argc, char **argv, calltap_fuzz_callback callback);
#endif
