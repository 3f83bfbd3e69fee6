// SPDX-License-Identifier: GPL-2.0
/* calltap's connect-time ownership program: records, in the calling process's context, who starts each
 * TCP connection and UDP flow of the capture targets' network namespaces.
 *
 * The connect4/6 and sendmsg4/6 hooks (cgroup sock_addr) run in the connecting process, but before an
 * ephemeral port is bound: they keep the owner, a TCP socket's by its cookie until its SYN leaves, a UDP
 * socket's in the socket's own storage (freed with the socket). The socket's egress packets (cgroup_skb)
 * have the whole tuple: for TCP the SYN (the socket is in SYN_SENT), recorded once; for UDP the first
 * datagram to each destination, recorded again at most once a second while the flow goes on, so a
 * record is never older than the traffic it names. Two hook types in all (each one attached costs every
 * connect on the host a little, measured by Scripts/bench-connect), and no allocation per TCP socket.
 *
 * Only namespaces named in `targets` (netns cookies) are recorded. Records go to user space through a
 * ring buffer, without a wakeup each (user space reads it every few milliseconds); a full buffer is
 * counted in `lost`. Rebuilt by Scripts/make-bpf; a test checks that the committed object matches this
 * source. */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "../include/ct_event.h"

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define CTX(field) (*(volatile __u32 *)&(field))

/* The few kernel fields read, relocated against the running kernel's BTF (CO-RE). */
struct task_struct {
    int tgid;
    struct task_struct *real_parent;
    struct task_struct *group_leader;
    __u64 start_boottime;
    char comm[16];
} __attribute__((preserve_access_index));

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 20);
} events SEC(".maps");

/* netns cookie -> 1 for every capture target. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 256);
    __type(key, __u64);
    __type(value, __u8);
} targets SEC(".maps");

/* Records the ring buffer had no room for. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} lost SEC(".maps");

/* A UDP socket's owner, kept with the socket from its connect (or first send) on. */
struct {
    __uint(type, BPF_MAP_TYPE_SK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, int);
    __type(value, struct ct_event);
} owners SEC(".maps");

/* A connecting TCP socket's owner by socket cookie, from connect to its SYN (preallocated: no
 * allocation per connect). */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, __u64);
    __type(value, struct ct_event);
} tcp_pending SEC(".maps");

struct udp_flow {
    __u64 cookie;
    __u32 daddr[4];
    __u16 dport;
    __u16 sport;
    __u32 pad;
};

/* UDP flows recorded (socket cookie, destination, source port) -> when: forgetting one only means
 * recording it again. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, struct udp_flow);
    __type(value, __u64);
} udp_seen SEC(".maps");

#define UDP_AGAIN_NS 1000000000ULL

static __always_inline int wanted(void *ctx, __u64 *cookie)
{
    *cookie = bpf_get_netns_cookie(ctx);
    return bpf_map_lookup_elem(&targets, cookie) != 0;
}

/* Process facts of the caller: ids, its leader's name and start time, its parent, its cgroup. */
static __always_inline void fill_process(struct ct_event *e)
{
    __u64 id = bpf_get_current_pid_tgid();
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct task_struct *leader = BPF_CORE_READ(task, group_leader);
    e->tgid = id >> 32;
    e->tid = (__u32)id;
    e->start_boottime = BPF_CORE_READ(leader, start_boottime);
    /* real_parent is the thread that forked: its leader's start time is the parent process's. */
    struct task_struct *parent = BPF_CORE_READ(leader, real_parent, group_leader);
    e->ppid = BPF_CORE_READ(parent, tgid);
    e->parent_start_boottime = BPF_CORE_READ(parent, start_boottime);
    BPF_CORE_READ_STR_INTO(&e->comm, leader, comm);
    e->cgroup_id = bpf_get_current_cgroup_id();
    e->ktime = bpf_ktime_get_boot_ns();
}

static __always_inline void emit(const struct ct_event *e)
{
    struct ct_event *out = bpf_ringbuf_reserve(&events, sizeof(*out), 0);
    if (!out) {
        __u32 zero = 0;
        __u64 *n = bpf_map_lookup_elem(&lost, &zero);
        if (n)
            *n += 1;
        return;
    }
    __builtin_memcpy(out, e, sizeof(*out));
    bpf_ringbuf_submit(out, BPF_RB_NO_WAKEUP);
}

/* A socket about to connect or send: keep its owner until its packets show the tuple. */
static __always_inline int remember(struct bpf_sock_addr *ctx)
{
    __u32 type = ctx->type, protocol = ctx->protocol;
    if (!((type == SOCK_STREAM && protocol == IPPROTO_TCP) || (type == SOCK_DGRAM && protocol == IPPROTO_UDP)))
        return 1;
    __u64 ns;
    if (!wanted(ctx, &ns))
        return 1;
    if (protocol == IPPROTO_TCP) {
        struct ct_event e = {};
        e.netns_cookie = ns;
        e.proto = IPPROTO_TCP;
        fill_process(&e);
        __u64 cookie = bpf_get_socket_cookie(ctx);
        bpf_map_update_elem(&tcp_pending, &cookie, &e, BPF_ANY);
        return 1;
    }
    struct bpf_sock *sk = ctx->sk;
    if (!sk)
        return 1;
    struct ct_event *owner = bpf_sk_storage_get(&owners, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
    if (!owner)
        return 1;
    /* The same process sending again (every datagram of an unconnected socket passes here). */
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (owner->tgid == tgid && owner->netns_cookie == ns)
        return 1;
    struct ct_event e = {};
    e.netns_cookie = ns;
    e.proto = IPPROTO_UDP;
    fill_process(&e);
    __builtin_memcpy(owner, &e, sizeof(e));
    return 1;
}

SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx) { return remember(ctx); }

SEC("cgroup/connect6")
int connect6(struct bpf_sock_addr *ctx) { return remember(ctx); }

SEC("cgroup/sendmsg4")
int sendmsg4(struct bpf_sock_addr *ctx) { return remember(ctx); }

SEC("cgroup/sendmsg6")
int sendmsg6(struct bpf_sock_addr *ctx) { return remember(ctx); }

/* A remembered socket's packet: the first one (TCP: the SYN), or the first to a destination (UDP),
 * names the tuple. */
SEC("cgroup_skb/egress")
int egress(struct __sk_buff *skb)
{
    /* Every packet of every socket passes here: leave at once unless it is a SYN of a connecting TCP
     * socket or a UDP datagram of a socket with an owner. */
    struct bpf_sock *sk = skb->sk;
    if (!sk)
        return 1;
    sk = bpf_sk_fullsock(sk);
    if (!sk)
        return 1;
    struct ct_event e;
    __u32 protocol = sk->protocol;
    if (protocol == IPPROTO_TCP) {
        if (sk->state != BPF_TCP_SYN_SENT)
            return 1;
        __u64 cookie = bpf_get_socket_cookie(skb);
        struct ct_event *pending = bpf_map_lookup_elem(&tcp_pending, &cookie);
        if (!pending)
            return 1;
        e = *pending;
        bpf_map_delete_elem(&tcp_pending, &cookie);
    } else if (protocol == IPPROTO_UDP) {
        struct ct_event *owner = bpf_sk_storage_get(&owners, sk, 0, 0);
        if (!owner)
            return 1;
        e = *owner;
    } else {
        return 1;
    }
    __u8 first;
    if (bpf_skb_load_bytes(skb, 0, &first, 1))
        return 1;
    __u32 l4;
    __u8 next;
    if ((first >> 4) == 4) {
        if (bpf_skb_load_bytes(skb, 9, &next, 1))
            return 1;
        if (bpf_skb_load_bytes(skb, 12, &e.saddr[0], 4) || bpf_skb_load_bytes(skb, 16, &e.daddr[0], 4))
            return 1;
        e.family = 4;
        l4 = (first & 0x0f) * 4;
    } else if ((first >> 4) == 6) {
        if (bpf_skb_load_bytes(skb, 6, &next, 1))
            return 1;
        if (bpf_skb_load_bytes(skb, 8, e.saddr, 16) || bpf_skb_load_bytes(skb, 24, e.daddr, 16))
            return 1;
        e.family = 6;
        l4 = 40;
        /* Hop-by-hop, routing and destination options headers (a fragment is left alone). */
        for (int i = 0; i < 4; i++) {
            if (next != 0 && next != 43 && next != 60)
                break;
            __u8 h[2];
            if (bpf_skb_load_bytes(skb, l4 & 0x3ff, h, 2))
                return 1;
            next = h[0];
            l4 += ((__u32)h[1] + 1) * 8;
        }
    } else {
        return 1;
    }
    if (next != e.proto)
        return 1;
    __u16 ports[2];
    if (bpf_skb_load_bytes(skb, l4 & 0x3ff, ports, 4))
        return 1;
    e.sport = bpf_ntohs(ports[0]);
    e.dport = bpf_ntohs(ports[1]);
    e.socket_cookie = bpf_get_socket_cookie(skb);
    e.ktime = bpf_ktime_get_boot_ns();
    e.kind = CT_CONNECT;
    if (e.proto == IPPROTO_UDP) {
        struct udp_flow flow = {};
        flow.cookie = e.socket_cookie;
        flow.daddr[0] = e.daddr[0];
        flow.daddr[1] = e.daddr[1];
        flow.daddr[2] = e.daddr[2];
        flow.daddr[3] = e.daddr[3];
        flow.dport = e.dport;
        flow.sport = e.sport;
        __u64 *last = bpf_map_lookup_elem(&udp_seen, &flow);
        if (last && e.ktime - *last < UDP_AGAIN_NS)
            return 1;
        bpf_map_update_elem(&udp_seen, &flow, &e.ktime, BPF_ANY);
    }
    emit(&e);
    return 1;
}

char LICENSE[] SEC("license") = "GPL";
