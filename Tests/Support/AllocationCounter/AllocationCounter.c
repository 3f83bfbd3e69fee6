#include "AllocationCounter.h"
#include <stddef.h>

// glibc's own entry points, which the wrappers below forward to.
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);

static _Thread_local int counting;
static _Thread_local long counted;

void calltap_allocations_start(void) { counted = 0; counting = 1; }
long calltap_allocations_stop(void) { counting = 0; return counted; }

void *malloc(size_t size) {
    if (counting) counted++;
    return __libc_malloc(size);
}

void *calloc(size_t count, size_t size) {
    if (counting) counted++;
    return __libc_calloc(count, size);
}

void *realloc(void *ptr, size_t size) {
    if (counting) counted++;
    return __libc_realloc(ptr, size);
}

void *aligned_alloc(size_t alignment, size_t size) {
    if (counting) counted++;
    return __libc_memalign(alignment, size);
}

void *memalign(size_t alignment, size_t size) {
    if (counting) counted++;
    return __libc_memalign(alignment, size);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    if (counting) counted++;
    void *p = __libc_memalign(alignment, size);
    if (p == NULL) return 12; // ENOMEM
    *out = p;
    return 0;
}
