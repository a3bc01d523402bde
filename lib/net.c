/*
 * Tap networking, in-process: address arithmetic over the context's pool,
 * persistent taps made with the tun driver's ioctls and configured over a
 * raw rtnetlink socket, and named network namespaces bound the way
 * `ip netns` binds them.
 *
 * Work inside another network namespace runs on a short-lived thread that
 * joins it with setns(): a thread's namespace is its own, so the caller's
 * threads never move, and the sockets and tun fd that thread opens belong
 * to the namespace it joined.
 *
 * SPDX-License-Identifier: MIT
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/if.h>
#include <linux/if_arp.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/nsfs.h>
#include <linux/rtnetlink.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "net.h"

#define NETNS_DIR "/run/netns"
#define TUN_PATH "/dev/net/tun"
#define NL_RECV_SIZE 65536
#define NL_REQ_SIZE 512

int (*net_test_fail_hook)(const char *step);

/* --- addresses ----------------------------------------------------------- */

uint32_t net_pool_slots(const vmm_context *ctx)
{
    if (ctx == NULL || ctx->net_pool_prefix > 30)
        return 0;
    return 1u << (30 - ctx->net_pool_prefix);
}

static void format_ipv4(uint32_t addr, char out[16])
{
    snprintf(out, 16, "%u.%u.%u.%u", addr >> 24, (addr >> 16) & 0xff,
             (addr >> 8) & 0xff, addr & 0xff);
}

int net_lease_for_slot(const vmm_context *ctx, uint32_t slot,
                       struct net_lease *out)
{
    struct net_lease l;
    uint32_t slots, net, guest;

    if (ctx == NULL || out == NULL)
        return error_set(VMM_EINVAL, "net_lease_for_slot: ctx or out is "
                         "NULL");
    slots = net_pool_slots(ctx);
    if (slot >= slots) {
        char pool[16];

        format_ipv4(ctx->net_pool_addr, pool);
        return error_set(VMM_EINVAL, "network slot %u is outside the pool "
                         "%s/%u, which has %u slots", slot, pool,
                         ctx->net_pool_prefix, slots);
    }

    memset(&l, 0, sizeof(l));
    net = ctx->net_pool_addr + 4 * slot;
    guest = net + 2;
    l.slot = slot;
    l.prefix_len = 30;
    format_ipv4(net + 1, l.host_ip);
    format_ipv4(guest, l.guest_ip);
    format_ipv4(0xfffffffcu, l.netmask);
    /* 06: locally administered, unicast; the rest is the guest address. */
    snprintf(l.mac, sizeof(l.mac), "06:00:%02X:%02X:%02X:%02X",
             guest >> 24, (guest >> 16) & 0xff, (guest >> 8) & 0xff,
             guest & 0xff);
    snprintf(l.tap, sizeof(l.tap), "vmtap%u", slot);
    *out = l;
    return 0;
}

int net_boot_arg(const struct net_lease *l, char *buf, size_t size)
{
    int n;

    if (l == NULL || buf == NULL)
        return error_set(VMM_EINVAL, "net_boot_arg: lease or buffer is "
                         "NULL");
    n = snprintf(buf, size, "ip=%s::%s:%s::eth0:off", l->guest_ip,
                 l->host_ip, l->netmask);
    if (n < 0 || (size_t)n >= size)
        return error_set(VMM_EINVAL, "boot argument for %s does not fit in "
                         "%zu bytes", l->guest_ip, size);
    return 0;
}

/* --- names --------------------------------------------------------------- */

/* As the kernel's dev_valid_name(), minus what it would quietly accept but
 * tools mangle: every byte a visible ASCII character. */
static bool tap_name_valid(const char *name)
{
    size_t len;

    if (name == NULL)
        return false;
    len = strnlen(name, IFNAMSIZ);
    if (len == 0 || len >= IFNAMSIZ || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (name[i] <= ' ' || name[i] > '~' || name[i] == '/' ||
            name[i] == ':')
            return false;
    return true;
}

bool net_netns_name_valid(const char *name)
{
    size_t len;

    if (name == NULL)
        return false;
    len = strnlen(name, NAME_MAX + 1);
    if (len == 0 || len > NAME_MAX || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (name[i] <= ' ' || name[i] > '~' || name[i] == '/')
            return false;
    return true;
}

/* --- rtnetlink ----------------------------------------------------------- */

/*
 * The helpers below return 0 or a negative errno and never touch the error
 * record, so a cleanup path can call them without hiding the failure it is
 * cleaning up after. `ext` keeps the kernel's extended-ack text, if any.
 */
struct nl {
    int fd;
    uint32_t seq;
    char *buf;
    char ext[256];
};

struct nl_req {
    struct nlmsghdr h;
    char payload[NL_REQ_SIZE - sizeof(struct nlmsghdr)];
};

/* Called for each reply message that is not an ack, error or end of dump. */
typedef int (*nl_reply_fn)(const struct nlmsghdr *h, void *user);

static int nl_open(struct nl *nl)
{
    struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
    int one = 1;

    memset(nl, 0, sizeof(*nl));
    nl->buf = malloc(NL_RECV_SIZE);
    if (nl->buf == NULL)
        return -ENOMEM;
    nl->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (nl->fd < 0 || bind(nl->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int err = errno;

        if (nl->fd >= 0)
            close(nl->fd);
        free(nl->buf);
        nl->buf = NULL;
        return -err;
    }
    /* Both only improve error reports; older kernels lack them. */
    setsockopt(nl->fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
    setsockopt(nl->fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
    nl->seq = (uint32_t)time(NULL);
    return 0;
}

static void nl_close(struct nl *nl)
{
    if (nl->buf != NULL)
        close(nl->fd);
    free(nl->buf);
    nl->buf = NULL;
}

static void nl_req_init(struct nl_req *r, uint16_t type, uint16_t flags,
                        const void *hdr, size_t hdr_len)
{
    memset(r, 0, sizeof(*r));
    r->h.nlmsg_type = type;
    r->h.nlmsg_flags = NLM_F_REQUEST | flags;
    r->h.nlmsg_len = NLMSG_LENGTH(hdr_len);
    memcpy(NLMSG_DATA(&r->h), hdr, hdr_len);
}

static int nl_put(struct nl_req *r, uint16_t type, const void *data,
                  size_t len)
{
    size_t off = NLMSG_ALIGN(r->h.nlmsg_len);
    struct rtattr *a;

    if (off + RTA_SPACE(len) > sizeof(*r))
        return -ENOBUFS;
    a = (struct rtattr *)((char *)r + off);
    a->rta_type = type;
    a->rta_len = RTA_LENGTH(len);
    memcpy(RTA_DATA(a), data, len);
    r->h.nlmsg_len = off + RTA_SPACE(len);
    return 0;
}

static int nl_put_str(struct nl_req *r, uint16_t type, const char *s)
{
    return nl_put(r, type, s, strlen(s) + 1);
}

/* Keeps NLMSGERR_ATTR_MSG of an error, when the kernel sent one. */
static void nl_keep_ext_ack(struct nl *nl, const struct nlmsghdr *h)
{
    const struct nlmsgerr *e = NLMSG_DATA(h);
    size_t off = NLMSG_HDRLEN + sizeof(*e);
    const struct rtattr *a;
    int left;

    if (!(h->nlmsg_flags & NLM_F_ACK_TLVS))
        return;
    if (!(h->nlmsg_flags & NLM_F_CAPPED))
        off += NLMSG_ALIGN(e->msg.nlmsg_len) - NLMSG_HDRLEN;
    if (off >= h->nlmsg_len)
        return;
    a = (const struct rtattr *)((const char *)h + off);
    left = (int)(h->nlmsg_len - off);
    for (; RTA_OK(a, left); a = RTA_NEXT(a, left)) {
        if (a->rta_type == NLMSGERR_ATTR_MSG) {
            snprintf(nl->ext, sizeof(nl->ext), "%.*s",
                     (int)RTA_PAYLOAD(a), (const char *)RTA_DATA(a));
            return;
        }
    }
}

/*
 * Sends one request and reads until its ack, its error or the end of its
 * dump. Replies from anyone but the kernel, or to another sequence number,
 * are skipped.
 */
static int nl_transact(struct nl *nl, struct nl_req *r, nl_reply_fn fn,
                       void *user)
{
    struct sockaddr_nl to = { .nl_family = AF_NETLINK };
    bool dump = (r->h.nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP;

    nl->ext[0] = '\0';
    r->h.nlmsg_seq = ++nl->seq;
    if (!dump)
        r->h.nlmsg_flags |= NLM_F_ACK;
    if (sendto(nl->fd, r, r->h.nlmsg_len, 0, (struct sockaddr *)&to,
               sizeof(to)) < 0)
        return -errno;

    for (;;) {
        struct sockaddr_nl from;
        socklen_t from_len = sizeof(from);
        struct nlmsghdr *h;
        ssize_t got;
        int n;

        got = recvfrom(nl->fd, nl->buf, NL_RECV_SIZE, MSG_TRUNC,
                       (struct sockaddr *)&from, &from_len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -errno;
        if (got > NL_RECV_SIZE)
            return -EMSGSIZE;
        n = (int)got;
        if (from.nl_pid != 0)
            continue;

        for (h = (struct nlmsghdr *)nl->buf; NLMSG_OK(h, n);
             h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_seq != r->h.nlmsg_seq)
                continue;
            if (h->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = NLMSG_DATA(h);

                if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
                    return -EBADMSG;
                if (e->error != 0)
                    nl_keep_ext_ack(nl, h);
                return e->error;
            }
            if (h->nlmsg_type == NLMSG_DONE) {
                int err = 0;

                if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(int)))
                    memcpy(&err, NLMSG_DATA(h), sizeof(err));
                return err;
            }
            if (fn != NULL) {
                int err = fn(h, user);

                if (err < 0)
                    return err;
            }
        }
    }
}

struct link_info {
    int index;
    unsigned short type;
    char kind[16];
    char alias[IFALIASZ]; /* IFLA_IFALIAS; "" when it has none */
};

static int parse_link(const struct nlmsghdr *h, void *user)
{
    struct link_info *info = user;
    const struct ifinfomsg *ifi = NLMSG_DATA(h);
    const struct rtattr *a;
    int left;

    if (h->nlmsg_type != RTM_NEWLINK ||
        h->nlmsg_len < NLMSG_LENGTH(sizeof(*ifi)))
        return 0;
    info->index = ifi->ifi_index;
    info->type = ifi->ifi_type;
    left = IFLA_PAYLOAD(h);
    for (a = IFLA_RTA(ifi); RTA_OK(a, left); a = RTA_NEXT(a, left)) {
        const struct rtattr *b;
        int inner;

        if (a->rta_type == IFLA_IFALIAS)
            snprintf(info->alias, sizeof(info->alias), "%.*s",
                     (int)RTA_PAYLOAD(a), (const char *)RTA_DATA(a));
        if (a->rta_type != IFLA_LINKINFO)
            continue;
        inner = RTA_PAYLOAD(a);
        for (b = RTA_DATA(a); RTA_OK(b, inner); b = RTA_NEXT(b, inner))
            if (b->rta_type == IFLA_INFO_KIND)
                snprintf(info->kind, sizeof(info->kind), "%.*s",
                         (int)RTA_PAYLOAD(b), (const char *)RTA_DATA(b));
    }
    return 0;
}

/* 0 and *info filled, -ENODEV when there is no such link, or an error. */
static int link_get(struct nl *nl, const char *name, struct link_info *info)
{
    struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC };
    struct nl_req r;
    int err;

    memset(info, 0, sizeof(*info));
    nl_req_init(&r, RTM_GETLINK, 0, &ifi, sizeof(ifi));
    err = nl_put_str(&r, IFLA_IFNAME, name);
    if (err == 0)
        err = nl_transact(nl, &r, parse_link, info);
    if (err == 0 && info->index == 0)
        err = -ENODEV;
    return err;
}

static bool link_is_tap(const struct link_info *info)
{
    return strcmp(info->kind, "tun") == 0 && info->type == ARPHRD_ETHER;
}

static int link_set_up(struct nl *nl, int index)
{
    struct ifinfomsg ifi = {
        .ifi_family = AF_UNSPEC,
        .ifi_index = index,
        .ifi_flags = IFF_UP,
        .ifi_change = IFF_UP,
    };
    struct nl_req r;

    nl_req_init(&r, RTM_NEWLINK, 0, &ifi, sizeof(ifi));
    return nl_transact(nl, &r, NULL, NULL);
}

/* Sent without a terminator: the kernel counts one against IFALIASZ. */
static int link_set_alias(struct nl *nl, int index, const char *alias)
{
    struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC, .ifi_index = index };
    struct nl_req r;
    int err;

    nl_req_init(&r, RTM_NEWLINK, 0, &ifi, sizeof(ifi));
    err = nl_put(&r, IFLA_IFALIAS, alias, strlen(alias));
    if (err == 0)
        err = nl_transact(nl, &r, NULL, NULL);
    return err;
}

static int link_delete(struct nl *nl, int index)
{
    struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC, .ifi_index = index };
    struct nl_req r;

    nl_req_init(&r, RTM_DELLINK, 0, &ifi, sizeof(ifi));
    return nl_transact(nl, &r, NULL, NULL);
}

static int addr_change(struct nl *nl, uint16_t type, uint16_t flags,
                       int index, struct in_addr addr, uint8_t prefix_len)
{
    struct ifaddrmsg ifa = {
        .ifa_family = AF_INET,
        .ifa_prefixlen = prefix_len,
        .ifa_scope = RT_SCOPE_UNIVERSE,
        .ifa_index = (uint32_t)index,
    };
    struct nl_req r;
    int err;

    nl_req_init(&r, type, flags, &ifa, sizeof(ifa));
    err = nl_put(&r, IFA_LOCAL, &addr, sizeof(addr));
    if (err == 0)
        err = nl_put(&r, IFA_ADDRESS, &addr, sizeof(addr));
    if (err == 0)
        err = nl_transact(nl, &r, NULL, NULL);
    return err;
}

/* The IPv4 addresses of one link other than the one it should keep. */
struct stale_addrs {
    int index;
    struct in_addr keep;
    uint8_t keep_len;
    unsigned count;
    struct in_addr addr[16];
    uint8_t len[16];
};

static int collect_stale(const struct nlmsghdr *h, void *user)
{
    struct stale_addrs *s = user;
    const struct ifaddrmsg *ifa = NLMSG_DATA(h);
    const struct rtattr *a;
    int left;

    if (h->nlmsg_type != RTM_NEWADDR ||
        h->nlmsg_len < NLMSG_LENGTH(sizeof(*ifa)) ||
        ifa->ifa_family != AF_INET || (int)ifa->ifa_index != s->index)
        return 0;
    left = IFA_PAYLOAD(h);
    for (a = IFA_RTA(ifa); RTA_OK(a, left); a = RTA_NEXT(a, left)) {
        struct in_addr in;

        if (a->rta_type != IFA_LOCAL || RTA_PAYLOAD(a) != sizeof(in))
            continue;
        memcpy(&in, RTA_DATA(a), sizeof(in));
        if ((in.s_addr == s->keep.s_addr &&
             ifa->ifa_prefixlen == s->keep_len) ||
            s->count == ARRAY_SIZE(s->addr))
            continue;
        s->addr[s->count] = in;
        s->len[s->count++] = ifa->ifa_prefixlen;
    }
    return 0;
}

/* A reused tap may carry the address of an older lease; drop it. */
static int addr_drop_stale(struct nl *nl, int index, struct in_addr keep,
                           uint8_t keep_len, unsigned *dropped)
{
    struct ifaddrmsg ifa = { .ifa_family = AF_INET };
    struct stale_addrs s = { .index = index, .keep = keep,
                             .keep_len = keep_len };
    struct nl_req r;
    int err;

    nl_req_init(&r, RTM_GETADDR, NLM_F_DUMP, &ifa, sizeof(ifa));
    err = nl_transact(nl, &r, collect_stale, &s);
    for (unsigned i = 0; err == 0 && i < s.count; i++) {
        err = addr_change(nl, RTM_DELADDR, 0, index, s.addr[i], s.len[i]);
        if (err == -EADDRNOTAVAIL)
            err = 0;
    }
    *dropped = s.count;
    return err;
}

/* --- running in a namespace ---------------------------------------------- */

struct ns_call {
    int netns_fd;      /* -1: enter a new, empty namespace instead */
    const char *label; /* what it works on, for errors: "tap vmtap3 in ..." */
    int (*fn)(void *arg);
    void *arg;
    int ret;
    int code;
    int os_error;
    char message[1024];
};

static void *ns_thread(void *p)
{
    struct ns_call *c = p;

    if (c->netns_fd >= 0 && setns(c->netns_fd, CLONE_NEWNET) < 0)
        c->ret = error_set_os(VMM_ENET, errno, "%s: entering that "
                              "network namespace", c->label);
    else if (c->netns_fd < 0 && unshare(CLONE_NEWNET) < 0)
        c->ret = error_set_os(VMM_ENET, errno, "%s: making a new network "
                              "namespace", c->label);
    else
        c->ret = c->fn(c->arg);

    /* The record is per thread: carry it back to the caller's. */
    if (c->ret < 0) {
        const vmm_error *e = vmm_error_last();

        c->code = e->code;
        c->os_error = e->os_error;
        snprintf(c->message, sizeof(c->message), "%s", e->message);
    }
    return NULL;
}

/* Sets the caller's record from one made on another thread. */
static int error_adopt(const struct ns_call *c)
{
    char msg[sizeof(c->message)];
    char suffix[256];
    size_t len = strlen(c->message), slen;

    if (c->os_error == 0)
        return error_set(c->code, "%s", c->message);
    /* error_set_os() will append the strerror text again; drop it. */
    memcpy(msg, c->message, len + 1);
    snprintf(suffix, sizeof(suffix), ": %s", strerror(c->os_error));
    slen = strlen(suffix);
    if (len >= slen && strcmp(msg + len - slen, suffix) == 0)
        msg[len - slen] = '\0';
    return error_set_os(c->code, c->os_error, "%s", msg);
}

/*
 * Runs fn in the namespace of netns_fd (in the calling thread when -1, or
 * in a new empty namespace when `fresh`), on a thread of its own for any
 * other namespace.
 */
static int run_in_netns(int netns_fd, bool fresh, const char *label,
                        int (*fn)(void *), void *arg)
{
    struct ns_call c = { .netns_fd = fresh ? -1 : netns_fd, .label = label,
                         .fn = fn, .arg = arg };
    pthread_t t;
    int err;

    if (netns_fd < 0 && !fresh)
        return fn(arg);
    err = pthread_create(&t, NULL, ns_thread, &c);
    if (err != 0)
        return error_set_os(VMM_EIO, err, "%s: starting a thread to work "
                            "in the network namespace", label);
    pthread_join(t, NULL);
    return c.ret < 0 ? error_adopt(&c) : c.ret;
}

/* "in /run/netns/NAME" or "in net:[INODE]", for messages about an fd. */
static void netns_describe(int netns_fd, char *buf, size_t size)
{
    char link[64], target[PATH_MAX];
    ssize_t n;

    if (netns_fd < 0) {
        snprintf(buf, size, "in the caller's network namespace");
        return;
    }
    snprintf(link, sizeof(link), "/proc/self/fd/%d", netns_fd);
    n = readlink(link, target, sizeof(target) - 1);
    if (n < 0) {
        snprintf(buf, size, "in the network namespace of fd %d", netns_fd);
        return;
    }
    target[n] = '\0';
    snprintf(buf, size, "in network namespace %s", target);
}

static int test_fault(const char *step)
{
    return net_test_fail_hook != NULL ? net_test_fail_hook(step) : 0;
}

/* --- taps ---------------------------------------------------------------- */

/*
 * A tap's owner lives in its interface alias, which the kernel keeps with
 * the link: anyone sharing the namespace can read it, and it goes when the
 * tap goes. An owner longer than an alias can hold keeps its start and
 * ends in a hash of the whole, so two long owners that share their first
 * bytes still differ.
 */
static void owner_alias(const char *owner, char out[IFALIASZ])
{
    size_t len = strlen(owner), keep = IFALIASZ - 1 - 17;
    uint64_t h = 0xcbf29ce484222325u;

    if (len < IFALIASZ) {
        memcpy(out, owner, len + 1);
        return;
    }
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)owner[i]) * 0x100000001b3u;
    memcpy(out, owner, keep);
    snprintf(out + keep, IFALIASZ - keep, "#%016" PRIx64, h);
}

/* "owned by "X"" or "has no owner", for messages about a tap. */
static void owner_describe(const char *alias, char *buf, size_t size)
{
    if (alias[0] == '\0')
        snprintf(buf, size, "has no owner (no interface alias)");
    else
        snprintf(buf, size, "is owned by \"%s\"", alias);
}

struct tap_job {
    const char *tap;
    const char *where;
    const char *alias;
    struct in_addr host;
    uint8_t prefix_len;
    bool reused;
    unsigned stale_dropped;
};

/*
 * Makes a tap, with the flags Firecracker will open it with, and gives back
 * the fd that holds it. It is not persistent yet: should this program die
 * before it has an owner, closing the fd removes it again. IFF_TUN_EXCL
 * refuses a device that someone made since the lookup.
 */
static int tun_open(const char *tap, const char *where, int *fd_out)
{
    struct ifreq ifr;
    int fd, err;

    fd = open(TUN_PATH, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return error_set_os(errno == ENOENT ? VMM_EUNSUPPORTED : VMM_ENET,
                            errno, "tap %s %s: opening " TUN_PATH, tap,
                            where);

    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_TUN_EXCL;
    memcpy(ifr.ifr_name, tap, strlen(tap));
    err = test_fault("tun");
    if (err == 0 && ioctl(fd, TUNSETIFF, &ifr) < 0)
        err = errno;
    if (err == EBUSY) {
        close(fd);
        return error_set(VMM_EEXIST, "tap %s %s: another program created "
                         "it at the same moment; leaving it alone", tap,
                         where);
    }
    if (err != 0) {
        close(fd);
        return error_set_os(VMM_ENET, err, "tap %s %s: creating it", tap,
                            where);
    }
    *fd_out = fd;
    return 0;
}

/* Gives the tap held by tun_fd its owner, then lets it outlive the fd. */
static int tap_adopt(struct nl *nl, const struct tap_job *j, int tun_fd,
                     struct link_info *info)
{
    int err;

    err = link_get(nl, j->tap, info);
    if (err < 0)
        return error_set_os(VMM_ENET, -err, "tap %s %s: looking it up%s%s",
                            j->tap, j->where, nl->ext[0] ? ": " : "",
                            nl->ext);
    err = -test_fault("owner");
    if (err == 0)
        err = link_set_alias(nl, info->index, j->alias);
    if (err < 0)
        return error_set_os(VMM_ENET, -err, "tap %s %s: setting its owner "
                            "alias%s%s", j->tap, j->where,
                            nl->ext[0] ? ": " : "", nl->ext);
    if (ioctl(tun_fd, TUNSETPERSIST, 1) < 0)
        return error_set_os(VMM_ENET, errno, "tap %s %s: making it "
                            "persistent", j->tap, j->where);
    return 0;
}

static int tap_create_here(void *arg)
{
    struct tap_job *j = arg;
    struct link_info info;
    bool created = false;
    char host[INET_ADDRSTRLEN], whose[IFALIASZ + 32];
    struct nl nl;
    int tun_fd = -1, err, r;

    inet_ntop(AF_INET, &j->host, host, sizeof(host));
    err = nl_open(&nl);
    if (err < 0)
        return error_set_os(VMM_ENET, -err, "tap %s %s: opening a netlink "
                            "socket", j->tap, j->where);

    err = link_get(&nl, j->tap, &info);
    if (err == 0 && !link_is_tap(&info)) {
        r = error_set(VMM_EEXIST, "tap %s %s: a device of that name exists "
                      "and is not a tap (kind \"%s\"); leaving it alone",
                      j->tap, j->where, info.kind);
        goto out;
    }
    if (err == 0 && strcmp(info.alias, j->alias) != 0) {
        owner_describe(info.alias, whose, sizeof(whose));
        r = error_set(VMM_EEXIST, "tap %s %s %s, not \"%s\"; leaving it "
                      "alone", j->tap, j->where, whose, j->alias);
        goto out;
    }
    if (err == 0) {
        j->reused = true;
    } else if (err == -ENODEV) {
        r = tun_open(j->tap, j->where, &tun_fd);
        if (r < 0)
            goto out;
        created = true;
        r = tap_adopt(&nl, j, tun_fd, &info);
        if (r < 0)
            goto out;
    } else {
        r = error_set_os(VMM_ENET, -err, "tap %s %s: looking it up%s%s",
                         j->tap, j->where, nl.ext[0] ? ": " : "", nl.ext);
        goto out;
    }

    if (j->reused) {
        err = addr_drop_stale(&nl, info.index, j->host, j->prefix_len,
                              &j->stale_dropped);
        if (err < 0) {
            r = error_set_os(VMM_ENET, -err, "tap %s %s: removing the "
                             "addresses of an older lease%s%s", j->tap,
                             j->where, nl.ext[0] ? ": " : "", nl.ext);
            goto out;
        }
    }

    err = -test_fault("address");
    if (err == 0)
        err = addr_change(&nl, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE,
                          info.index, j->host, j->prefix_len);
    if (err < 0) {
        r = error_set_os(VMM_ENET, -err, "tap %s %s: adding address "
                         "%s/%u%s%s", j->tap, j->where, host, j->prefix_len,
                         nl.ext[0] ? ": " : "", nl.ext);
        goto out;
    }

    err = -test_fault("up");
    if (err == 0)
        err = link_set_up(&nl, info.index);
    if (err < 0) {
        r = error_set_os(VMM_ENET, -err, "tap %s %s: bringing it up%s%s",
                         j->tap, j->where, nl.ext[0] ? ": " : "", nl.ext);
        goto out;
    }
    r = 0;

out:
    if (r < 0 && created) {
        /* By name, and only while it is still the one this call made:
         * the lookup above may be what failed. */
        if (link_get(&nl, j->tap, &info) == 0 && link_is_tap(&info) &&
            strcmp(info.alias, j->alias) == 0)
            link_delete(&nl, info.index);
    }
    /* Not yet persistent, the tap goes with its last fd. */
    if (tun_fd >= 0)
        close(tun_fd);
    nl_close(&nl);
    return r;
}

/* VMM_EINVAL unless the owner is a non-empty string. */
static int check_owner(const char *tap, const char *owner, const char *fn)
{
    if (owner == NULL || owner[0] == '\0')
        return error_set(VMM_EINVAL, "%s: tap %s: the owner is %s", fn,
                         tap, owner == NULL ? "NULL" : "empty");
    return 0;
}

int net_tap_create(const vmm_context *ctx, const char *vm_name,
                   const struct net_lease *l, const char *owner,
                   int netns_fd)
{
    struct tap_job j = { 0 };
    char where[PATH_MAX + 32], label[PATH_MAX + 64], alias[IFALIASZ];
    int r;

    if (l == NULL)
        return error_set(VMM_EINVAL, "net_tap_create: lease is NULL");
    if (!tap_name_valid(l->tap))
        return error_set(VMM_EINVAL, "tap name \"%.*s\" is not a valid "
                         "interface name (1 to %d visible characters, no "
                         "'/' or ':')", IFNAMSIZ, l->tap, IFNAMSIZ - 1);
    if (inet_pton(AF_INET, l->host_ip, &j.host) != 1 ||
        l->prefix_len == 0 || l->prefix_len > 32)
        return error_set(VMM_EINVAL, "tap %s: host address \"%.*s/%u\" is "
                         "not an IPv4 address and prefix", l->tap,
                         (int)sizeof(l->host_ip), l->host_ip,
                         l->prefix_len);
    r = check_owner(l->tap, owner, "net_tap_create");
    if (r < 0)
        return r;
    if (netns_fd < -1)
        return error_set(VMM_EINVAL, "tap %s: network namespace fd %d is "
                         "invalid", l->tap, netns_fd);

    netns_describe(netns_fd, where, sizeof(where));
    owner_alias(owner, alias);
    j.tap = l->tap;
    j.where = where;
    j.alias = alias;
    j.prefix_len = (uint8_t)l->prefix_len;
    snprintf(label, sizeof(label), "tap %s %s", l->tap, where);
    r = run_in_netns(netns_fd, false, label, tap_create_here, &j);
    if (r < 0)
        return r;
    if (j.reused)
        log_info(ctx, "net", vm_name, "reused existing tap %s %s%s", l->tap,
                 where, j.stale_dropped ? " and removed addresses of an "
                 "older lease from it" : "");
    return 0;
}

struct tap_del_job {
    const char *tap;
    const char *where;
    const char *alias;
    bool exists;
};

static int tap_delete_here(void *arg)
{
    struct tap_del_job *j = arg;
    struct link_info info;
    char whose[IFALIASZ + 32];
    struct nl nl;
    int err, r = 0;

    err = nl_open(&nl);
    if (err < 0)
        return error_set_os(VMM_ENET, -err, "tap %s %s: opening a netlink "
                            "socket", j->tap, j->where);

    err = link_get(&nl, j->tap, &info);
    if (err == -ENODEV)
        goto out;
    if (err == 0 && !link_is_tap(&info)) {
        r = error_set(VMM_ENET, "tap %s %s: the device of that name is not "
                      "a tap (kind \"%s\"); not deleting it", j->tap,
                      j->where, info.kind);
        goto out;
    }
    if (err == 0 && strcmp(info.alias, j->alias) != 0) {
        owner_describe(info.alias, whose, sizeof(whose));
        r = error_set(VMM_EBUSY, "tap %s %s %s, not \"%s\"; not deleting "
                      "it", j->tap, j->where, whose, j->alias);
        goto out;
    }
    /* By index: a tap made again under that name since is not this one. */
    if (err == 0)
        err = link_delete(&nl, info.index);
    if (err < 0 && err != -ENODEV)
        r = error_set_os(VMM_ENET, -err, "tap %s %s: deleting it%s%s",
                         j->tap, j->where, nl.ext[0] ? ": " : "", nl.ext);

out:
    nl_close(&nl);
    return r;
}

int net_tap_delete(const char *tap, const char *owner, int netns_fd)
{
    struct tap_del_job j = { .tap = tap };
    char where[PATH_MAX + 32], label[PATH_MAX + 64], alias[IFALIASZ];
    int r;

    if (!tap_name_valid(tap))
        return error_set(VMM_EINVAL, "tap name \"%.*s\" is not a valid "
                         "interface name", IFNAMSIZ, tap ? tap : "(null)");
    r = check_owner(tap, owner, "net_tap_delete");
    if (r < 0)
        return r;
    if (netns_fd < -1)
        return error_set(VMM_EINVAL, "tap %s: network namespace fd %d is "
                         "invalid", tap, netns_fd);
    netns_describe(netns_fd, where, sizeof(where));
    owner_alias(owner, alias);
    j.where = where;
    j.alias = alias;
    snprintf(label, sizeof(label), "tap %s %s", tap, where);
    return run_in_netns(netns_fd, false, label, tap_delete_here, &j);
}

static int tap_probe_here(void *arg)
{
    struct tap_del_job *j = arg;
    struct link_info info;
    struct nl nl;
    int err;

    err = nl_open(&nl);
    if (err < 0)
        return error_set_os(VMM_ENET, -err, "tap %s: opening a netlink "
                            "socket", j->tap);
    err = link_get(&nl, j->tap, &info);
    nl_close(&nl);
    if (err < 0 && err != -ENODEV)
        return error_set_os(VMM_ENET, -err, "tap %s: looking it up",
                            j->tap);
    j->exists = err == 0 && link_is_tap(&info);
    return 0;
}

bool net_tap_exists(const char *tap, int netns_fd)
{
    struct tap_del_job j = { .tap = tap };

    if (!tap_name_valid(tap) || netns_fd < -1)
        return false;
    return run_in_netns(netns_fd, false, tap, tap_probe_here, &j) == 0 &&
           j.exists;
}

/* --- named network namespaces -------------------------------------------- */

/*
 * The bind mounts below must be seen by every mount namespace that later
 * copies this one (as `ip netns exec` makes), so /run/netns becomes a
 * shared mount point, bound onto itself when it is not a mount yet.
 */
static int netns_dir_ready(void)
{
    int fd, r = 0;

    if (mkdir(NETNS_DIR, 0755) < 0 && errno != EEXIST)
        return error_set_os(VMM_EIO, errno, "creating " NETNS_DIR);
    fd = open(NETNS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return error_set_os(VMM_EIO, errno, "opening " NETNS_DIR);
    /* Two programs binding it at once would stack two mounts. */
    if (flock(fd, LOCK_EX) < 0) {
        r = error_set_os(VMM_EIO, errno, "locking " NETNS_DIR);
        goto out;
    }

    if (mount("", NETNS_DIR, "none", MS_SHARED | MS_REC, NULL) == 0)
        goto out;
    if (errno != EINVAL) {
        r = error_set_os(VMM_EIO, errno, "making " NETNS_DIR " a shared "
                         "mount");
        goto out;
    }
    if (mount(NETNS_DIR, NETNS_DIR, "none", MS_BIND | MS_REC, NULL) < 0 ||
        mount("", NETNS_DIR, "none", MS_SHARED | MS_REC, NULL) < 0)
        r = error_set_os(VMM_EIO, errno, "binding " NETNS_DIR " onto "
                         "itself as a shared mount");

out:
    close(fd);
    return r;
}

struct netns_job {
    const char *path;
    bool bound;
};

/* Runs in a thread that has just entered a new network namespace. */
static int netns_bind_here(void *arg)
{
    struct netns_job *j = arg;
    struct link_info info;
    struct nl nl;
    int err;

    if (mount("/proc/thread-self/ns/net", j->path, "none", MS_BIND,
              NULL) < 0)
        return error_set_os(VMM_ENET, errno, "network namespace %s: "
                            "binding it", j->path);
    j->bound = true;

    /* Loopback comes down in a new namespace; tools run there expect it. */
    err = nl_open(&nl);
    if (err < 0)
        return error_set_os(VMM_ENET, -err, "network namespace %s: opening "
                            "a netlink socket", j->path);
    err = link_get(&nl, "lo", &info);
    if (err == 0)
        err = link_set_up(&nl, info.index);
    if (err < 0)
        error_set_os(VMM_ENET, -err, "network namespace %s: bringing lo "
                     "up%s%s", j->path, nl.ext[0] ? ": " : "", nl.ext);
    nl_close(&nl);
    return err < 0 ? VMM_ENET : 0;
}

static int netns_path(const char *name, char *path, size_t size,
                      const char *what)
{
    if (!net_netns_name_valid(name))
        return error_set(VMM_EINVAL, "%s: network namespace name \"%.64s\" "
                         "is invalid (1 to %d visible characters, no '/', "
                         "not \".\" or \"..\")", what, name ? name : "(null)",
                         NAME_MAX);
    snprintf(path, size, NETNS_DIR "/%s", name);
    return 0;
}

int net_netns_create(const char *name)
{
    char path[sizeof(NETNS_DIR) + NAME_MAX + 1];
    char label[NAME_MAX + 32];
    struct netns_job j = { .path = path };
    int fd, r;

    r = netns_path(name, path, sizeof(path), "net_netns_create");
    if (r < 0)
        return r;
    r = netns_dir_ready();
    if (r < 0)
        return r;

    fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
    if (fd < 0)
        return error_set_os(errno == EEXIST ? VMM_EEXIST : VMM_EIO, errno,
                            "network namespace %s: creating %s", name, path);
    close(fd);

    snprintf(label, sizeof(label), "network namespace %s", name);
    r = run_in_netns(-1, true, label, netns_bind_here, &j);
    if (r < 0) {
        if (j.bound)
            umount2(path, MNT_DETACH);
        unlink(path);
    }
    return r;
}

int net_netns_delete(const char *name)
{
    char path[sizeof(NETNS_DIR) + NAME_MAX + 1];
    int r;

    r = netns_path(name, path, sizeof(path), "net_netns_delete");
    if (r < 0)
        return r;
    /* EINVAL: not a mount (a create that stopped half-way) or gone. */
    if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
        return error_set_os(VMM_ENET, errno, "network namespace %s: "
                            "unmounting %s", name, path);
    if (unlink(path) < 0 && errno != ENOENT)
        return error_set_os(VMM_EIO, errno, "network namespace %s: "
                            "removing %s", name, path);
    return 0;
}

int net_netns_open(const char *name, int *fd_out)
{
    char path[sizeof(NETNS_DIR) + NAME_MAX + 1];
    int fd, r;

    if (fd_out == NULL)
        return error_set(VMM_EINVAL, "net_netns_open: fd_out is NULL");
    r = netns_path(name, path, sizeof(path), "net_netns_open");
    if (r < 0)
        return r;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return error_set_os(errno == ENOENT ? VMM_ENOTFOUND : VMM_EIO,
                            errno, "network namespace %s: opening %s", name,
                            path);
    /* A plain file left by an interrupted create is no namespace. */
    if (ioctl(fd, NS_GET_NSTYPE) != CLONE_NEWNET) {
        close(fd);
        return error_set(VMM_ENOTFOUND, "network namespace %s: %s is not "
                         "a bound network namespace", name, path);
    }
    *fd_out = fd;
    return 0;
}
