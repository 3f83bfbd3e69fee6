/* One connection start as the kernel saw it, in the connecting process's context. Shared by the BPF
 * program (bpf/connect.bpf.c) and the loader; the layout is fixed (no padding holes). */
#ifndef CT_EVENT_H
#define CT_EVENT_H

#ifdef __bpf__
typedef __u64 ct_u64;
typedef __u32 ct_u32;
typedef __u16 ct_u16;
typedef __u8 ct_u8;
#else
#include <stdint.h>
typedef uint64_t ct_u64;
typedef uint32_t ct_u32;
typedef uint16_t ct_u16;
typedef uint8_t ct_u8;
#endif

/* kind */
#define CT_CONNECT 0  /* a connection (TCP) or a UDP flow to one destination started */

struct ct_event {
    ct_u64 netns_cookie;     /* the socket's network namespace (SO_NETNS_COOKIE) */
    ct_u64 socket_cookie;    /* the socket (SO_COOKIE) */
    ct_u64 cgroup_id;        /* the process's cgroup v2 id (the cgroup directory's inode) */
    ct_u64 start_boottime;   /* thread-group leader's start, ns since boot (/proc/PID/stat field 22 x 1e9/HZ) */
    ct_u64 ktime;            /* CLOCK_BOOTTIME ns of the connection's first packet (UDP: at most 1 s old) */
    ct_u64 parent_start_boottime; /* the parent's start, likewise (to tell a reused parent PID) */
    ct_u32 tgid;             /* process id (initial PID namespace) */
    ct_u32 tid;              /* thread id */
    ct_u32 ppid;             /* parent's process id */
    ct_u32 saddr[4];         /* client address, network order (IPv4 in saddr[0]) */
    ct_u32 daddr[4];         /* server address */
    ct_u16 sport;            /* client port, host order */
    ct_u16 dport;            /* server port, host order */
    ct_u8 family;            /* 4 or 6 */
    ct_u8 proto;             /* 6 (TCP) or 17 (UDP) */
    ct_u8 kind;              /* CT_CONNECT */
    ct_u8 pad;
    char comm[16];           /* the process's name (its leader's comm) */
};

#endif
