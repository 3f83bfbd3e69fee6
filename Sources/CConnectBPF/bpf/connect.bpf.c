// SPDX-License-Identifier: GPL-2.0
/* calltap's connect-time ownership program: records, in the calling process's context, who starts each
 * TCP connection and UDP flow of the capture targets' network namespaces.
 *
 * TCP: a connection's first SYN leaves from connect() itself, in the connecting thread, with the whole
 * tuple bound: one egress program (cgroup_skb) records it there, with nothing kept per socket. A SYN
 * sent again (from a timer, in whatever task happens to run) is left alone.
 * UDP: the connect4/6 and sendmsg4/6 hooks (cgroup sock_addr) run in the process, before an ephemeral
 * port is bound: they keep the owner in the socket's own storage (freed with the socket), and the egress
 * program records the first datagram to each destination, again at most once a second while the flow
 * goes on, so a record is never older than the traffic it names. A TCP connect passes those hooks and
 * leaves at once. Every hook attached costs every connect or packet on the host a little (measured by
 * Scripts/bench-connect), so each leaves as early as it can.
 *
 * Only namespaces named in `targets` (netns cookies) are recorded. Records go to user space through a
 * ring buffer, without a wakeup each (user space reads it every few milliseconds, and is woken when the
 * buffer is a quarter full); a full buffer is counted in `lost`. Rebuilt by Scripts/make-bpf; a test
 * checks that the committed object matches this source. */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include "../include/ct_event.h"

#define SOCK_DGRAM 2
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17

/* The few kernel fields read, relocated against the running kernel's BTF (CO-RE), through pointers the
 * verifier knows the types of (plain loads, no helper call each). */
struct task_struct {
    int tgid;
    struct task_struct *real_parent;
    struct task_struct *group_leader;
    __u64 start_boottime;
    char comm[16];
} __attribute__((preserve_access_index));

struct net {
    __u64 net_cookie;
} __attribute__((preserve_access_index));

typedef struct {
    struct net *net;
} possible_net_t;

struct sock_common {
    possible_net_t skc_net;
} __attribute__((preserve_access_index));

struct sock {
    struct sock_common __sk_common;
} __attribute__((preserve_access_index));

struct inet_sock {
    struct sock sk;
} __attribute__((preserve_access_index));

struct inet_connection_sock {
    struct inet_sock icsk_inet;
    __u8 icsk_retransmits;
} __attribute__((preserve_access_index));

struct tcp_sock {
    struct inet_connection_sock inet_conn;
} __attribute__((preserve_access_index));

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 20);
} events SEC(".maps");

/* Wake the reader when this much is waiting (else it reads on its own every few milliseconds). */
#define WAKE_AT ((1 << 20) / 4)

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

static __always_inline int wanted(__u64 netns_cookie)
{
    return bpf_map_lookup_elem(&targets, &netns_cookie) != 0;
}

/* Process facts of the caller: ids, its leader's name and start time, its parent, its cgroup. */
static __always_inline void fill_process(struct ct_event *e)
{
    __u64 id = bpf_get_current_pid_tgid();
    struct task_struct *task = bpf_get_current_task_btf();
    struct task_struct *leader = task->group_leader;
    e->tgid = id >> 32;
    e->tid = (__u32)id;
    e->start_boottime = leader->start_boottime;
    /* real_parent is the thread that forked: its leader's start time is the parent process's. */
    struct task_struct *parent = leader->real_parent->group_leader;
    e->ppid = parent->tgid;
    e->parent_start_boottime = parent->start_boottime;
    __builtin_memcpy(e->comm, leader->comm, sizeof(e->comm));
    e->cgroup_id = bpf_get_current_cgroup_id();
}

static __always_inline void count_lost(void)
{
    __u32 zero = 0;
    __u64 *n = bpf_map_lookup_elem(&lost, &zero);
    if (n)
        *n += 1;
}

/* A record to user space: a wakeup only when enough is waiting. */
static __always_inline void submit(struct ct_event *out)
{
    __u64 flags = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= WAKE_AT ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
    bpf_ringbuf_submit(out, flags);
}

/* A UDP socket about to connect or send: keep its owner until its datagrams show the tuple. */
static __always_inline int remember(struct bpf_sock_addr *ctx)
{
    /* A TCP connect passes here too: it leaves at once (its SYN is recorded at egress). */
    if (ctx->type != SOCK_DGRAM || ctx->protocol != IPPROTO_UDP)
        return 1;
    __u64 ns = bpf_get_netns_cookie(ctx);
    if (!wanted(ns))
        return 1;
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

struct tuple {
    __u32 saddr[4];
    __u32 daddr[4];
    __u16 sport;
    __u16 dport;
    __u8 family;
    __u8 tcp_flags;
};

#define TCP_SYN 0x02
#define TCP_ACK 0x10

/* The packet's addresses and ports (and a TCP segment's flags), when its transport is `proto`. 0 on
 * success. */
static __always_inline int parse(struct __sk_buff *skb, __u8 proto, struct tuple *t)
{
    /* The fixed header in one load (an IPv4 one first: a datagram may be shorter than 40 bytes). */
    __u8 h[40];
    if (bpf_skb_load_bytes(skb, 0, h, 20))
        return -1;
    __u32 l4;
    __u8 next;
    if ((h[0] >> 4) == 4) {
        next = h[9];
        __builtin_memcpy(&t->saddr[0], &h[12], 4);
        __builtin_memcpy(&t->daddr[0], &h[16], 4);
        t->family = 4;
        l4 = (h[0] & 0x0f) * 4;
    } else if ((h[0] >> 4) == 6) {
        if (bpf_skb_load_bytes(skb, 0, h, 40))
            return -1;
        next = h[6];
        __builtin_memcpy(t->saddr, &h[8], 16);
        __builtin_memcpy(t->daddr, &h[24], 16);
        t->family = 6;
        l4 = 40;
        /* Hop-by-hop, routing and destination options headers (a fragment is left alone). */
        for (int i = 0; i < 4; i++) {
            if (next != 0 && next != 43 && next != 60)
                break;
            __u8 x[2];
            if (bpf_skb_load_bytes(skb, l4 & 0x3ff, x, 2))
                return -1;
            next = x[0];
            l4 += ((__u32)x[1] + 1) * 8;
        }
    } else {
        return -1;
    }
    if (next != proto)
        return -1;
    /* The ports, and for TCP the header up to its flags. */
    __u8 th[14];
    if (bpf_skb_load_bytes(skb, l4 & 0x3ff, th, proto == IPPROTO_TCP ? 14 : 4))
        return -1;
    t->sport = (__u16)th[0] << 8 | th[1];
    t->dport = (__u16)th[2] << 8 | th[3];
    t->tcp_flags = proto == IPPROTO_TCP ? th[13] : 0;
    return 0;
}

static __always_inline void put_tuple(struct ct_event *e, const struct tuple *t)
{
    __builtin_memcpy(e->saddr, t->saddr, sizeof(e->saddr));
    __builtin_memcpy(e->daddr, t->daddr, sizeof(e->daddr));
    e->sport = t->sport;
    e->dport = t->dport;
    e->family = t->family;
    e->kind = CT_CONNECT;
    e->pad = 0;
}

/* A connection's first SYN, sent from connect() in the connecting thread. */
static __always_inline int tcp_syn(struct __sk_buff *skb, struct bpf_sock *sk)
{
    struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
    if (!tp)
        return 1;
    /* A SYN sent again leaves from the retransmission timer, counted before it is sent. */
    if (tp->inet_conn.icsk_retransmits)
        return 1;
    __u64 ns = tp->inet_conn.icsk_inet.sk.__sk_common.skc_net.net->net_cookie;
    if (!wanted(ns))
        return 1;
    struct tuple t = {};
    /* Only the SYN itself: a reset the kernel answers with while the socket waits carries it too. */
    if (parse(skb, IPPROTO_TCP, &t) || (t.tcp_flags & (TCP_SYN | TCP_ACK)) != TCP_SYN)
        return 1;
    struct ct_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        count_lost();
        return 1;
    }
    e->netns_cookie = ns;
    e->proto = IPPROTO_TCP;
    put_tuple(e, &t);
    fill_process(e);
    e->socket_cookie = bpf_get_socket_cookie(skb);
    e->ktime = bpf_ktime_get_boot_ns();
    submit(e);
    return 1;
}

/* A datagram of a UDP socket with an owner: the first to each destination, and one a second after. */
static __always_inline int udp_datagram(struct __sk_buff *skb, struct bpf_sock *sk)
{
    struct ct_event *owner = bpf_sk_storage_get(&owners, sk, 0, 0);
    if (!owner)
        return 1;
    struct tuple t = {};
    if (parse(skb, IPPROTO_UDP, &t))
        return 1;
    __u64 cookie = bpf_get_socket_cookie(skb);
    __u64 now = bpf_ktime_get_boot_ns();
    struct udp_flow flow = {};
    flow.cookie = cookie;
    __builtin_memcpy(flow.daddr, t.daddr, sizeof(flow.daddr));
    flow.dport = t.dport;
    flow.sport = t.sport;
    __u64 *last = bpf_map_lookup_elem(&udp_seen, &flow);
    if (last && now - *last < UDP_AGAIN_NS)
        return 1;
    bpf_map_update_elem(&udp_seen, &flow, &now, BPF_ANY);
    struct ct_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        count_lost();
        return 1;
    }
    __builtin_memcpy(e, owner, sizeof(*e));
    put_tuple(e, &t);
    e->socket_cookie = cookie;
    e->ktime = now;
    submit(e);
    return 1;
}

/* Every packet of every socket on the host passes here: anything but a TCP socket's SYN or a UDP
 * datagram leaves after a few loads. */
SEC("cgroup_skb/egress")
int egress(struct __sk_buff *skb)
{
    struct bpf_sock *sk = skb->sk;
    if (!sk)
        return 1;
    sk = bpf_sk_fullsock(sk);
    if (!sk)
        return 1;
    __u32 protocol = sk->protocol;
    if (protocol == IPPROTO_TCP)
        return sk->state == BPF_TCP_SYN_SENT ? tcp_syn(skb, sk) : 1;
    if (protocol == IPPROTO_UDP)
        return udp_datagram(skb, sk);
    return 1;
}

char LICENSE[] SEC("license") = "GPL";
