// SPDX-License-Identifier: GPL-2.0
/* calltap's connect-time ownership program: records, in the calling process's context, who starts each
 * TCP connection and UDP flow of the capture targets' network namespaces.
 *
 * - TCP: a sock_ops program sees BPF_SOCK_OPS_TCP_CONNECT_CB in the connecting process, after the source
 *   port was chosen, just before the SYN leaves: the tuple is complete there.
 * - UDP: connect4/6 and sendmsg4/6 (cgroup sock_addr) run in the process but before an ephemeral port is
 *   bound, so they only remember the owner by socket cookie; the socket's first egress packet to each
 *   destination (cgroup_skb) completes the tuple and emits the record.
 *
 * Only namespaces named in `targets` (netns cookies) are recorded. Records go to user space through a
 * ring buffer; a full buffer is counted in `lost`. Rebuilt by Scripts/make-bpf; a test checks that the
 * committed object matches this source. */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "../include/ct_event.h"

#define AF_INET 2
#define AF_INET6 10
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

/* UDP socket cookie -> its owner, until its packets show the tuple. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, __u64);
    __type(value, struct ct_event);
} udp_owner SEC(".maps");

struct udp_flow {
    __u64 cookie;
    __u32 daddr[4];
    __u16 dport;
    __u16 sport;
    __u32 pad;
};

/* UDP flows already recorded (socket cookie, destination, source port). */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, struct udp_flow);
    __type(value, __u8);
} udp_seen SEC(".maps");

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
    e->ppid = BPF_CORE_READ(leader, real_parent, tgid);
    BPF_CORE_READ_STR_INTO(&e->comm, leader, comm);
    e->cgroup_id = bpf_get_current_cgroup_id();
    e->ktime = bpf_ktime_get_ns();
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
    bpf_ringbuf_submit(out, 0);
}

SEC("sockops")
int tcp_connect(struct bpf_sock_ops *ctx)
{
    if (ctx->op != BPF_SOCK_OPS_TCP_CONNECT_CB)
        return 1;
    __u64 ns;
    if (!wanted(ctx, &ns))
        return 1;
    struct ct_event e = {};
    e.netns_cookie = ns;
    e.proto = IPPROTO_TCP;
    /* Every address field is read, unconditionally and once (volatile): the verifier refuses a load
     * through a context pointer the compiler offset once for several branches. */
    __u32 family = CTX(ctx->family);
    __u32 l4 = CTX(ctx->local_ip4), r4 = CTX(ctx->remote_ip4);
    __u32 l6[4] = {CTX(ctx->local_ip6[0]), CTX(ctx->local_ip6[1]), CTX(ctx->local_ip6[2]), CTX(ctx->local_ip6[3])};
    __u32 r6[4] = {CTX(ctx->remote_ip6[0]), CTX(ctx->remote_ip6[1]), CTX(ctx->remote_ip6[2]), CTX(ctx->remote_ip6[3])};
    __u32 lport = CTX(ctx->local_port), rport = CTX(ctx->remote_port);
    if (family == AF_INET) {
        e.family = 4;
        e.saddr[0] = l4;
        e.daddr[0] = r4;
    } else if (family == AF_INET6) {
        e.family = 6;
        __builtin_memcpy(e.saddr, l6, 16);
        __builtin_memcpy(e.daddr, r6, 16);
    } else {
        return 1;
    }
    e.sport = (__u16)lport;
    e.dport = (__u16)bpf_ntohl(rport);
    fill_process(&e);
    emit(&e);
    return 1;
}

/* A UDP socket about to send (connect, or sendto without connect): remember its owner. */
static __always_inline int remember_udp(struct bpf_sock_addr *ctx)
{
    if (ctx->type != SOCK_DGRAM || ctx->protocol != IPPROTO_UDP)
        return 1;
    __u64 ns;
    if (!wanted(ctx, &ns))
        return 1;
    __u64 cookie = bpf_get_socket_cookie(ctx);
    struct ct_event *known = bpf_map_lookup_elem(&udp_owner, &cookie);
    __u64 id = bpf_get_current_pid_tgid();
    if (known && known->tid == (__u32)id)
        return 1;
    struct ct_event e = {};
    e.netns_cookie = ns;
    e.proto = IPPROTO_UDP;
    fill_process(&e);
    bpf_map_update_elem(&udp_owner, &cookie, &e, BPF_ANY);
    return 1;
}

SEC("cgroup/connect4")
int udp_connect4(struct bpf_sock_addr *ctx) { return remember_udp(ctx); }

SEC("cgroup/connect6")
int udp_connect6(struct bpf_sock_addr *ctx) { return remember_udp(ctx); }

SEC("cgroup/sendmsg4")
int udp_sendmsg4(struct bpf_sock_addr *ctx) { return remember_udp(ctx); }

SEC("cgroup/sendmsg6")
int udp_sendmsg6(struct bpf_sock_addr *ctx) { return remember_udp(ctx); }

/* The first packet of a remembered UDP socket to each destination: the tuple is on it. */
SEC("cgroup_skb/egress")
int udp_egress(struct __sk_buff *skb)
{
    __u64 cookie = bpf_get_socket_cookie(skb);
    struct ct_event *owner = bpf_map_lookup_elem(&udp_owner, &cookie);
    if (!owner)
        return 1;
    struct ct_event e = *owner;
    struct udp_flow flow = {};
    flow.cookie = cookie;
    __u8 first;
    if (bpf_skb_load_bytes(skb, 0, &first, 1))
        return 1;
    __u32 l4;
    if ((first >> 4) == 4) {
        __u8 proto;
        if (bpf_skb_load_bytes(skb, 9, &proto, 1) || proto != IPPROTO_UDP)
            return 1;
        if (bpf_skb_load_bytes(skb, 12, &e.saddr[0], 4) || bpf_skb_load_bytes(skb, 16, &e.daddr[0], 4))
            return 1;
        e.family = 4;
        l4 = (first & 0x0f) * 4;
    } else if ((first >> 4) == 6) {
        __u8 next;
        if (bpf_skb_load_bytes(skb, 6, &next, 1) || next != IPPROTO_UDP)
            return 1;
        if (bpf_skb_load_bytes(skb, 8, e.saddr, 16) || bpf_skb_load_bytes(skb, 24, e.daddr, 16))
            return 1;
        e.family = 6;
        l4 = 40;
    } else {
        return 1;
    }
    __u16 ports[2];
    if (bpf_skb_load_bytes(skb, l4 & 0x3f, ports, 4))
        return 1;
    e.sport = bpf_ntohs(ports[0]);
    e.dport = bpf_ntohs(ports[1]);
    flow.daddr[0] = e.daddr[0];
    flow.daddr[1] = e.daddr[1];
    flow.daddr[2] = e.daddr[2];
    flow.daddr[3] = e.daddr[3];
    flow.dport = e.dport;
    flow.sport = e.sport;
    if (bpf_map_lookup_elem(&udp_seen, &flow))
        return 1;
    __u8 one = 1;
    bpf_map_update_elem(&udp_seen, &flow, &one, BPF_ANY);
    emit(&e);
    return 1;
}

char LICENSE[] SEC("license") = "GPL";
