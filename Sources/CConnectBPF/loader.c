#define _GNU_SOURCE
#include "ct_bpf.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>

struct ct_bpf {
    struct bpf_object *object;
    struct bpf_link *links[8];
    int link_count;
    struct ring_buffer *ring;
    /* The ring buffer's map, edge-triggered: ready only when the program forces a wakeup. */
    int wake_fd;
    int targets_fd;
    int lost_fd;
    ct_event_fn fn;
    void *context;
    int taken;
};

/* Records handed over per ct_bpf_poll: a writer that never pauses cannot keep the reader from
 * returning (libbpf goes on reading while records keep coming). */
#define CT_POLL_LIMIT 4096

/* libbpf's own messages: the last warning is kept for the error line, nothing is printed. */
static __thread char last_message[256];

static int keep_message(enum libbpf_print_level level, const char *format, va_list args)
{
    if (level == LIBBPF_DEBUG)
        return 0;
    char line[256];
    vsnprintf(line, sizeof line, format, args);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == ' '))
        line[--n] = 0;
    if (n > 0)
        memcpy(last_message, line, n + 1);
    return 0;
}

static struct ct_bpf *fail(struct ct_bpf *b, char *error, size_t size, const char *what, int err)
{
    if (error && size) {
        if (last_message[0])
            snprintf(error, size, "%s: %s (%s)", what, strerror(err < 0 ? -err : err), last_message);
        else
            snprintf(error, size, "%s: %s", what, strerror(err < 0 ? -err : err));
    }
    ct_bpf_close(b);
    return NULL;
}

static int on_record(void *ctx, void *data, size_t size)
{
    struct ct_bpf *b = ctx;
    if (size >= sizeof(struct ct_event) && b->fn)
        b->fn(b->context, (const struct ct_event *)data);
    /* A negative value stops libbpf after this record, which it has already consumed. */
    return ++b->taken >= CT_POLL_LIMIT ? -1 : 0;
}

struct ct_bpf *ct_bpf_open(const char *cgroup_dir, char *error, size_t error_size)
{
    last_message[0] = 0;
    libbpf_set_print(keep_message);
    struct ct_bpf *b = calloc(1, sizeof *b);
    if (!b)
        return fail(NULL, error, error_size, "out of memory", ENOMEM);
    b->wake_fd = -1;
    b->targets_fd = -1;
    b->lost_fd = -1;
    LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = "calltap_connect");
    b->object = bpf_object__open_mem(ct_connect_object, ct_connect_object_size, &opts);
    if (!b->object) {
        int err = errno;
        b->object = NULL;
        return fail(b, error, error_size, "opening the BPF object", err);
    }
    int err = bpf_object__load(b->object);
    if (err)
        return fail(b, error, error_size, "loading the BPF program", err);
    int cgroup = open(cgroup_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cgroup < 0)
        return fail(b, error, error_size, "opening the cgroup v2 root", errno);
    struct bpf_program *prog;
    bpf_object__for_each_program(prog, b->object) {
        if (b->link_count == (int)(sizeof b->links / sizeof b->links[0]))
            break;
        struct bpf_link *link = bpf_program__attach_cgroup(prog, cgroup);
        if (!link) {
            err = errno;
            close(cgroup);
            return fail(b, error, error_size, "attaching to the cgroup v2 root", err);
        }
        b->links[b->link_count++] = link;
    }
    close(cgroup);
    b->targets_fd = bpf_object__find_map_fd_by_name(b->object, "targets");
    b->lost_fd = bpf_object__find_map_fd_by_name(b->object, "lost");
    int events = bpf_object__find_map_fd_by_name(b->object, "events");
    if (b->targets_fd < 0 || b->lost_fd < 0 || events < 0)
        return fail(b, error, error_size, "finding the BPF maps", ENOENT);
    b->ring = ring_buffer__new(events, on_record, b, NULL);
    if (!b->ring)
        return fail(b, error, error_size, "opening the ring buffer", errno);
    /* libbpf's own epoll set is level-triggered: once woken it would stay ready while records keep
     * coming, and the reader would never sleep. */
    b->wake_fd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET};
    if (b->wake_fd < 0 || epoll_ctl(b->wake_fd, EPOLL_CTL_ADD, events, &ev))
        return fail(b, error, error_size, "watching the ring buffer", errno);
    return b;
}

int ct_bpf_add_netns(struct ct_bpf *b, uint64_t netns_cookie)
{
    uint8_t one = 1;
    return bpf_map_update_elem(b->targets_fd, &netns_cookie, &one, BPF_ANY) ? -errno : 0;
}

int ct_bpf_remove_netns(struct ct_bpf *b, uint64_t netns_cookie)
{
    return bpf_map_delete_elem(b->targets_fd, &netns_cookie) ? -errno : 0;
}

int ct_bpf_wait(struct ct_bpf *b, int timeout_ms)
{
    struct epoll_event ev;
    int n = epoll_wait(b->wake_fd, &ev, 1, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    return n > 0;
}

int ct_bpf_poll(struct ct_bpf *b, ct_event_fn fn, void *context)
{
    b->fn = fn;
    b->context = context;
    b->taken = 0;
    int n = ring_buffer__consume(b->ring);
    b->fn = NULL;
    b->context = NULL;
    if (n < 0 && b->taken >= CT_POLL_LIMIT)
        return b->taken;
    return n == -EINTR ? 0 : n;
}

uint64_t ct_bpf_lost(struct ct_bpf *b)
{
    int cpus = libbpf_num_possible_cpus();
    if (cpus <= 0 || cpus > 4096) /* the values live on this stack: 32 KiB at most */
        return 0;
    uint64_t values[cpus];
    uint32_t zero = 0;
    if (bpf_map_lookup_elem(b->lost_fd, &zero, values))
        return 0;
    uint64_t sum = 0;
    for (int i = 0; i < cpus; i++)
        sum += values[i];
    return sum;
}

void ct_bpf_close(struct ct_bpf *b)
{
    if (!b)
        return;
    if (b->wake_fd >= 0)
        close(b->wake_fd);
    if (b->ring)
        ring_buffer__free(b->ring);
    for (int i = 0; i < b->link_count; i++)
        bpf_link__destroy(b->links[i]);
    if (b->object)
        bpf_object__close(b->object);
    free(b);
}

int ct_cgroup_path(const char *root, uint64_t id, char *out, size_t size)
{
    if (size < 2)
        return -EINVAL;
    /* A cgroup v2 directory's id is its kernfs file handle: open it by handle, read back its path. */
    struct {
        struct file_handle handle;
        uint64_t id;
    } fh;
    fh.handle.handle_bytes = sizeof(uint64_t);
    fh.handle.handle_type = 0xfe; /* FILEID_KERNFS */
    fh.id = id;
    int mount = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (mount < 0)
        return -errno;
    int fd = open_by_handle_at(mount, &fh.handle, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int err = fd < 0 ? -errno : 0;
    close(mount);
    if (fd < 0)
        return err;
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, size - 1);
    err = n < 0 ? -errno : 0;
    close(fd);
    if (n < 0)
        return err;
    if ((size_t)n == size - 1)
        return -ENAMETOOLONG;
    out[n] = 0;
    return 0;
}

uint64_t ct_netns_cookie(void)
{
    /* The calling thread's network namespace, as the BPF program sees it (SO_NETNS_COOKIE). */
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    uint64_t cookie = 0;
    socklen_t len = sizeof cookie;
    if (getsockopt(fd, SOL_SOCKET, 71 /* SO_NETNS_COOKIE */, &cookie, &len))
        cookie = 0;
    close(fd);
    return cookie;
}
