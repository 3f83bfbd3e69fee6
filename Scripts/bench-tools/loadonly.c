/* The connect-time ownership program alone, for Scripts/bench-connect: loads and attaches it as the
 * daemon does (Sources/CConnectBPF/loader.c), watches the network namespace at argv[1]
 * (/var/run/netns/NAME), and reads the ring buffer as the daemon does, handing each record to nothing,
 * until SIGTERM. What it costs a connect loop is the kernel's side of the program, without the
 * daemon's capture and attribution. */
#define _GNU_SOURCE
#include "ct_bpf.h"
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static unsigned long long taken;

static void on_signal(int s)
{
    (void)s;
    stop = 1;
}

static void take(void *context, const struct ct_event *event)
{
    (void)context;
    (void)event;
    taken++;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: loadonly /var/run/netns/NAME\n");
        return 2;
    }
    char error[512];
    struct ct_bpf *b = ct_bpf_open("/sys/fs/cgroup/unified", error, sizeof error);
    if (!b)
        b = ct_bpf_open("/sys/fs/cgroup", error, sizeof error);
    if (!b) {
        fprintf(stderr, "loadonly: %s\n", error);
        return 1;
    }
    int ns = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (ns < 0 || setns(ns, CLONE_NEWNET)) {
        perror("loadonly: entering the namespace");
        return 1;
    }
    if (ct_bpf_add_netns(b, ct_netns_cookie())) {
        fprintf(stderr, "loadonly: cannot watch the namespace\n");
        return 1;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    int more = 0;
    while (!stop) {
        if (!more)
            ct_bpf_wait(b, 5);
        more = ct_bpf_poll(b, take, NULL) >= 4096;
    }
    fprintf(stderr, "loadonly: %llu records, %llu lost\n", taken, (unsigned long long)ct_bpf_lost(b));
    ct_bpf_close(b);
    return 0;
}
