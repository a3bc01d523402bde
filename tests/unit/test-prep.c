/*
 * Suite "prep": e2fsck and its status, patching ext4 images in-process,
 * the standard patch set and ssh host keys, on images made with
 * mkfs.ext4 -d and broken with debugfs.
 *
 * SPDX-License-Identifier: MIT
 */
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "prep.h"
#include "test-overlay-fixture.c"

#define FILE_OP(p, text, m) { PREP_WRITE_FILE, p, text, sizeof(text) - 1, m, \
                              0, 0 }

/* debugfs's view of one file's content. */
static char *guest_cat(const char *image, const char *path)
{
    return fx_out("debugfs -R 'cat %s' %s/%s 2>/dev/null", path, fx_dir,
                  image);
}

static char *guest_stat(const char *image, const char *path)
{
    return fx_out("debugfs -R 'stat %s' %s/%s 2>&1", path, fx_dir,
                  image);
}

static void assert_fsck_clean(const char *image)
{
    ck_assert_int_eq(fx_sh("e2fsck -fn %s/%s >%s/fsck.out 2>&1", fx_dir,
                           image, fx_dir), 0);
}

static char *disk(const char *image)
{
    static char path[512];

    snprintf(path, sizeof(path), "%s/%s", fx_dir, image);
    return path;
}

START_TEST(fsck_status_every_bit)
{
    static const struct {
        int bit;
        const char *text;
    } bits[] = {
        { 4, "errors left uncorrected" }, { 8, "operational error" },
        { 16, "usage or syntax error" }, { 32, "cancelled by user request" },
        { 128, "shared-library error" },
    };

    for (int s = 0; s <= 3; s++)
        ck_assert_int_eq(prep_fsck_status(s, "d.img"), 0);
    for (size_t i = 0; i < ARRAY_SIZE(bits); i++) {
        ck_assert_int_eq(prep_fsck_status(bits[i].bit, "d.img"), VMM_EDISK);
        ck_assert_vmm_error(VMM_EDISK, bits[i].text);
        ck_assert_vmm_error(VMM_EDISK, "d.img");
        /* With the success bits it is still failure. */
        ck_assert_int_eq(prep_fsck_status(bits[i].bit | 1, "d.img"),
                         VMM_EDISK);
    }
    ck_assert_int_eq(prep_fsck_status(4 | 8, "d.img"), VMM_EDISK);
    ck_assert_vmm_error(VMM_EDISK, "4 (errors left uncorrected), 8 "
                        "(operational error)");
    ck_assert_int_eq(prep_fsck_status(64, "d.img"), VMM_EDISK);
    ck_assert_vmm_error(VMM_EDISK, "unknown bits 0x40");
    ck_assert_int_eq(prep_fsck_status(-1, "d.img"), VMM_EDISK);
    ck_assert_int_eq(prep_fsck_status(300, "d.img"), VMM_EDISK);
}
END_TEST

START_TEST(broken_inode_bitmap_checksum_repaired_then_patched)
{
    static const struct prep_patch patches[] = {
        FILE_OP("/etc/hostname", "web1\n", 0644),
        FILE_OP("/etc/motd", "hello from libvmm\n", 0640),
    };
    struct prep_fsck_result res = { 0 };
    vmm_context *ctx = fx_context();
    char *out;

    fx_image("a.img", "32M", "true");
    ck_assert_int_eq(fx_sh("debugfs -w -R 'set_bg 0 inode_bitmap_csum 0' "
                           "%s >/dev/null 2>&1", disk("a.img")), 0);
    /* The state e2tools refuses. */
    out = fx_out("e2cp %s:/etc/hostname - 2>&1", disk("a.img"));
    ck_assert_ptr_nonnull(strstr(out, "Inode bitmap checksum does not "
                                      "match bitmap"));
    free(out);
    /* So does patching without the fsck step. */
    ck_assert_int_eq(prep_patch(ctx, "web1", disk("a.img"), patches, 2),
                     VMM_EDISK);
    ck_assert_vmm_error(VMM_EDISK, "checksum");

    ck_assert_int_eq(prep_run(ctx, "web1", disk("a.img"), patches, 2, &res),
                     0);
    ck_assert_int_eq(res.exit_status, 1);
    ck_assert(res.repaired);
    ck_assert_ptr_nonnull(strstr(fx_log, "e2fsck repaired"));
    ck_assert_ptr_nonnull(strstr(fx_log, "inode bitmap does not match "
                                         "checksum"));
    assert_fsck_clean("a.img");
    out = guest_cat("a.img", "/etc/hostname");
    ck_assert_str_eq(out, "web1\n");
    free(out);
    out = guest_cat("a.img", "/etc/motd");
    ck_assert_str_eq(out, "hello from libvmm\n");
    free(out);
    out = fx_out("e2cp %s:/etc/motd - 2>&1", disk("a.img"));
    ck_assert_str_eq(out, "hello from libvmm\n");
    free(out);
    vmm_context_free(ctx);
}
END_TEST

static char *md5(const char *image)
{
    return fx_out("md5sum < %s", disk(image));
}

START_TEST(needs_recovery_is_never_written)
{
    static const struct prep_patch patches[] = {
        FILE_OP("/etc/hostname", "db\n", 0644),
    };
    vmm_context *ctx = fx_context();
    char *before, *after, fake[512];

    fx_image("r.img", "32M", "true");
    ck_assert_int_eq(fx_sh("debugfs -w -R 'feature needs_recovery' %s "
                           ">/dev/null 2>&1", disk("r.img")), 0);
    before = md5("r.img");

    ck_assert_int_eq(prep_patch(ctx, "db", disk("r.img"), patches, 1),
                     VMM_EDISK);
    ck_assert_vmm_error(VMM_EDISK, "needs journal recovery");

    /* An e2fsck that "succeeds" without replaying: still refused. */
    snprintf(fake, sizeof(fake), "%s/fake-e2fsck", fx_dir);
    ck_assert_int_eq(fx_sh("printf '#!/bin/sh\\nexit 0\\n' > %s && "
                           "chmod +x %s", fake, fake), 0);
    prep_test_set_e2fsck(fake);
    ck_assert_int_eq(prep_run(ctx, "db", disk("r.img"), patches, 1, NULL),
                     VMM_EDISK);
    prep_test_set_e2fsck(NULL);
    ck_assert_vmm_error(VMM_EDISK, "needs journal recovery");
    after = md5("r.img");
    ck_assert_str_eq(before, after);
    free(after);

    /* The real e2fsck recovers it, then patching goes ahead. */
    ck_assert_int_eq(prep_run(ctx, "db", disk("r.img"), patches, 1, NULL),
                     0);
    after = guest_cat("r.img", "/etc/hostname");
    ck_assert_str_eq(after, "db\n");
    assert_fsck_clean("r.img");
    free(before);
    free(after);
    vmm_context_free(ctx);
}
END_TEST

START_TEST(fake_e2fsck_statuses_reach_the_caller)
{
    static const int statuses[] = { 4, 8, 16, 32, 128 };
    struct prep_fsck_result res;
    char fake[512];

    fx_image("s.img", "16M", "true");
    snprintf(fake, sizeof(fake), "%s/fake-e2fsck", fx_dir);
    for (size_t i = 0; i < ARRAY_SIZE(statuses); i++) {
        ck_assert_int_eq(fx_sh("printf '#!/bin/sh\\necho trouble on line "
                               "%zu\\nexit %d\\n' > %s && chmod +x %s", i,
                               statuses[i], fake, fake), 0);
        prep_test_set_e2fsck(fake);
        memset(&res, 0, sizeof(res));
        ck_assert_int_eq(prep_fsck(NULL, "v", disk("s.img"), &res),
                         VMM_EDISK);
        prep_test_set_e2fsck(NULL);
        ck_assert_int_eq(res.exit_status, statuses[i]);
        ck_assert_vmm_error(VMM_EDISK, "trouble on line");
        ck_assert_vmm_error(VMM_EDISK, "s.img");
    }
}
END_TEST

START_TEST(zeroed_superblock_fails_cleanly)
{
    static const struct prep_patch patches[] = {
        FILE_OP("/etc/hostname", "x\n", 0644),
    };
    struct prep_fsck_result res = { 0 };
    char *listing;

    /* One block group: no backup superblock to fall back on. */
    fx_image("z.img", "-b 4096 8M", "true");
    ck_assert_int_eq(fx_sh("dd if=/dev/zero of=%s bs=1024 seek=1 count=1 "
                           "conv=notrunc status=none", disk("z.img")), 0);
    ck_assert_int_eq(prep_run(NULL, "z", disk("z.img"), patches, 1, &res),
                     VMM_EDISK);
    ck_assert_int_ne(res.exit_status & 8, 0);
    ck_assert_vmm_error(VMM_EDISK, "z.img");
    ck_assert_vmm_error(VMM_EDISK, "operational error");
    ck_assert_int_eq(prep_patch(NULL, "z", disk("z.img"), patches, 1),
                     VMM_EDISK);
    ck_assert_vmm_error(VMM_EDISK, "z.img");
    listing = fx_out("cd %s && ls -A | grep -v '^tree-' | tr '\\n' ' '",
                     fx_dir);
    ck_assert_str_eq(listing, "z.img ");
    free(listing);
}
END_TEST

START_TEST(broken_free_blocks_count_repaired_and_logged)
{
    struct prep_fsck_result res = { 0 };
    vmm_context *ctx = fx_context();

    fx_image("f.img", "32M", "true");
    ck_assert_int_eq(fx_sh("debugfs -w -R 'ssv free_blocks_count 123' %s "
                           ">/dev/null 2>&1", disk("f.img")), 0);
    ck_assert_int_eq(prep_fsck(ctx, "vm-f", disk("f.img"), &res), 0);
    ck_assert_int_eq(res.exit_status, 1);
    ck_assert_ptr_nonnull(strstr(fx_log, "Free blocks count wrong (123, "
                                         "counted="));
    ck_assert_ptr_nonnull(strstr(fx_log, "vm-f"));
    assert_fsck_clean("f.img");
    /* A clean disk: nothing to log. */
    fx_log[0] = '\0';
    ck_assert_int_eq(prep_fsck(ctx, "vm-f", disk("f.img"), &res), 0);
    ck_assert_int_eq(res.exit_status, 0);
    ck_assert_str_eq(fx_log, "");
    vmm_context_free(ctx);
}
END_TEST

static char *free_inodes(const char *image)
{
    return fx_out("dumpe2fs -h %s 2>/dev/null | grep '^Free inodes'",
                  disk(image));
}

START_TEST(patch_operations)
{
    static char big[3 * 1024 * 1024 + 123];
    struct prep_patch ops[] = {
        FILE_OP("/etc/new.conf", "new\n", 0600),
        FILE_OP("/etc/hostname", "a much longer hostname than before\n",
                0644),
        { PREP_MKDIR, "/opt/a/b/c", NULL, 0, 0750, 1000, 1001 },
        { PREP_SYMLINK, "/opt/link", "/etc/new.conf", 13, 0, 0, 0 },
        { PREP_REMOVE, "/etc/old.conf", NULL, 0, 0, 0, 0 },
        { PREP_REMOVE, "/etc/never-was", NULL, 0, 0, 0, 0 },
        { PREP_REMOVE, "/etc/emptydir", NULL, 0, 0, 0, 0 },
        { PREP_REMOVE, "/etc/oldlink", NULL, 0, 0, 0, 0 },
        FILE_OP("/var/lib/deep/new/file", "made parents\n", 0644),
        { PREP_WRITE_FILE, "/srv/big", big, sizeof(big), 0644, 5, 6 },
        /* Through an absolute symlink: resolved inside the guest. */
        FILE_OP("/etc/resolv.conf", "nameserver 10.0.0.1\n", 0644),
        FILE_OP("/etc/abs/through-dir-link", "ok\n", 0644),
        FILE_OP("/etc/hostname", "short\n", 0644),
    };
    vmm_context *ctx = fx_context();
    char *out, *before_inodes;

    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)('a' + i % 23);
    fx_image("p.img", "64M", "echo old > etc/old.conf; mkdir etc/emptydir; "
             "ln -s /run/resolv.conf etc/resolv.conf; mkdir run; "
             "ln -s /srv etc/abs; mkdir srv; ln -s old.conf etc/oldlink");
    before_inodes = free_inodes("p.img");

    ck_assert_int_eq(prep_patch(ctx, "p", disk("p.img"), ops,
                                ARRAY_SIZE(ops)), 0);
    assert_fsck_clean("p.img");

    out = guest_cat("p.img", "/etc/new.conf");
    ck_assert_str_eq(out, "new\n");
    free(out);
    out = guest_stat("p.img", "/etc/new.conf");
    ck_assert_ptr_nonnull(strstr(out, "Mode:  0600"));
    ck_assert_ptr_nonnull(strstr(out, "EXTENTS"));
    free(out);
    out = guest_cat("p.img", "/etc/hostname");
    ck_assert_str_eq(out, "short\n");
    free(out);
    out = guest_stat("p.img", "/opt/a/b/c");
    ck_assert_ptr_nonnull(strstr(out, "Type: directory"));
    ck_assert_ptr_nonnull(strstr(out, "Mode:  0750"));
    ck_assert_ptr_nonnull(strstr(out, "User:  1000   Group:  1001"));
    free(out);
    out = guest_stat("p.img", "/opt/a");
    ck_assert_ptr_nonnull(strstr(out, "Mode:  0755"));
    free(out);
    out = guest_stat("p.img", "/opt/link");
    ck_assert_ptr_nonnull(strstr(out, "Type: symlink"));
    ck_assert_ptr_nonnull(strstr(out, "Fast link dest: \"/etc/new.conf\""));
    free(out);
    out = guest_stat("p.img", "/etc/old.conf");
    ck_assert_ptr_nonnull(strstr(out, "File not found"));
    free(out);
    out = guest_stat("p.img", "/etc/emptydir");
    ck_assert_ptr_nonnull(strstr(out, "File not found"));
    free(out);
    out = guest_stat("p.img", "/etc/oldlink");
    ck_assert_ptr_nonnull(strstr(out, "File not found"));
    free(out);
    out = guest_cat("p.img", "/var/lib/deep/new/file");
    ck_assert_str_eq(out, "made parents\n");
    free(out);
    {
        char path[512];
        FILE *f;

        snprintf(path, sizeof(path), "%s/big.expect", fx_dir);
        f = fopen(path, "w");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(big, 1, sizeof(big), f), sizeof(big));
        fclose(f);
        ck_assert_int_eq(fx_sh("debugfs -R 'cat /srv/big' %s 2>/dev/null | "
                               "cmp -s - %s", disk("p.img"), path), 0);
    }
    out = guest_stat("p.img", "/srv/big");
    ck_assert_ptr_nonnull(strstr(out, "User:     5   Group:     6"));
    free(out);
    out = guest_cat("p.img", "/run/resolv.conf");
    ck_assert_str_eq(out, "nameserver 10.0.0.1\n");
    free(out);
    out = guest_stat("p.img", "/etc/resolv.conf");
    ck_assert_ptr_nonnull(strstr(out, "Type: symlink"));
    free(out);
    out = guest_cat("p.img", "/srv/through-dir-link");
    ck_assert_str_eq(out, "ok\n");
    free(out);

    /* Removing what was added gives the inodes back. */
    {
        struct prep_patch undo[] = {
            { PREP_REMOVE, "/etc/new.conf", NULL, 0, 0, 0, 0 },
            { PREP_REMOVE, "/opt/a/b/c", NULL, 0, 0, 0, 0 },
            { PREP_REMOVE, "/opt/a/b", NULL, 0, 0, 0, 0 },
            { PREP_REMOVE, "/opt/a", NULL, 0, 0, 0, 0 },
            { PREP_REMOVE, "/opt/link", NULL, 0, 0, 0, 0 },
            { PREP_REMOVE, "/opt", NULL, 0, 0, 0, 0 },
            { PREP_REMOVE, "/var/lib/deep/new/file", NULL, 0, 0, 0, 0 },
            { PREP_REMOVE, "/var/lib/deep/new", NULL, 0, 0, 0, 0 },
            { PREP_REMOVE, "/var/lib/deep", NULL, 0, 0, 0, 0 },
            { PREP_REMOVE, "/var/lib", NULL, 0, 0, 0, 0 },
            { PREP_REMOVE, "/var", NULL, 0, 0, 0, 0 },
            { PREP_REMOVE, "/srv/big", NULL, 0, 0, 0, 0 },
            { PREP_REMOVE, "/srv/through-dir-link", NULL, 0, 0, 0, 0 },
            { PREP_REMOVE, "/run/resolv.conf", NULL, 0, 0, 0, 0 },
            FILE_OP("/etc/old.conf", "old\n", 0644),
            { PREP_MKDIR, "/etc/emptydir", NULL, 0, 0755, 0, 0 },
            { PREP_SYMLINK, "/etc/oldlink", "old.conf", 8, 0, 0, 0 },
        };
        char *after_inodes;

        ck_assert_int_eq(prep_patch(ctx, "p", disk("p.img"), undo,
                                    ARRAY_SIZE(undo)), 0);
        assert_fsck_clean("p.img");
        after_inodes = free_inodes("p.img");
        ck_assert_str_eq(before_inodes, after_inodes);
        free(after_inodes);
    }
    free(before_inodes);
    vmm_context_free(ctx);
}
END_TEST

START_TEST(patch_refusals)
{
    static const struct {
        struct prep_patch op;
        int code;
        const char *needle;
    } cases[] = {
        { FILE_OP("/etc", "x", 0644), VMM_EINVAL,
          "refusing to replace a directory with a file" },
        { FILE_OP("/etc/", "x", 0644), VMM_EINVAL, "directory" },
        { FILE_OP("/etc/escape/passwd", "x", 0644), VMM_EINVAL,
          "above the guest's root" },
        { FILE_OP("/etc/up", "x", 0644), VMM_EINVAL,
          "above the guest's root" },
        { FILE_OP("/../etc/x", "x", 0644), VMM_EINVAL,
          "above the guest's root" },
        { FILE_OP("/etc/hostname/x", "x", 0644), VMM_EINVAL,
          "not a directory" },
        { FILE_OP("/etc/loop1", "x", 0644), VMM_EINVAL,
          "too many levels of symlinks" },
        { { PREP_REMOVE, "/etc/full", NULL, 0, 0, 0, 0 }, VMM_EINVAL,
          "not empty" },
        { { PREP_MKDIR, "/etc/hostname", NULL, 0, 0755, 0, 0 }, VMM_EINVAL,
          "not a directory" },
        { { PREP_SYMLINK, "/etc", "x", 1, 0, 0, 0 }, VMM_EINVAL,
          "is a directory" },
        { FILE_OP("etc/relative", "x", 0644), VMM_EINVAL, "not an absolute" },
        { { PREP_SYMLINK, "/etc/s", NULL, 0, 0, 0, 0 }, VMM_EINVAL,
          "needs a target" },
        { { 99, "/etc/s", NULL, 0, 0, 0, 0 }, VMM_EINVAL,
          "unknown operation" },
    };
    char *before, *after;

    fx_image("x.img", "32M", "ln -s ../../.. etc/escape; "
             "ln -s .. etc/up2; ln -s up2/.. etc/up; mkdir etc/full; "
             "touch etc/full/f; ln -s loop2 etc/loop1; "
             "ln -s loop1 etc/loop2");
    before = md5("x.img");
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        ck_assert_int_eq(prep_patch(NULL, "x", disk("x.img"), &cases[i].op,
                                    1), cases[i].code);
        ck_assert_vmm_error(cases[i].code, cases[i].needle);
    }
    /* Refused before anything was written. */
    after = md5("x.img");
    ck_assert_str_eq(before, after);
    free(after);
    free(before);
    assert_fsck_clean("x.img");
}
END_TEST

START_TEST(patch_bad_arguments)
{
    struct prep_patch op = FILE_OP("/etc/a", "x", 0644);

    ck_assert_int_eq(prep_patch(NULL, "x", NULL, &op, 1), VMM_EINVAL);
    ck_assert_int_eq(prep_patch(NULL, "x", "/x.img", NULL, 1), VMM_EINVAL);
    ck_assert_int_eq(prep_patch(NULL, "x", "/nonexistent/x.img", &op, 1),
                     VMM_ENOTFOUND);
    ck_assert_vmm_error(VMM_ENOTFOUND, "/nonexistent/x.img");
    ck_assert_int_eq(prep_fsck(NULL, "x", NULL, NULL), VMM_EINVAL);
    ck_assert_int_eq(prep_detect_net_style(NULL, NULL), VMM_EINVAL);
}
END_TEST

START_TEST(detect_net_style)
{
    enum prep_net_style s = PREP_NET_NONE;

    fx_image("i.img", "16M", "mkdir -p etc/network; "
             "printf 'auto lo\\n' > etc/network/interfaces");
    ck_assert_int_eq(prep_detect_net_style(disk("i.img"), &s), 0);
    ck_assert_int_eq(s, PREP_NET_IFUPDOWN);

    fx_image("n.img", "16M", "mkdir -p etc/network etc/systemd/network "
             "etc/systemd/system/multi-user.target.wants; "
             "touch etc/network/interfaces; "
             "ln -s /lib/systemd/system/systemd-networkd.service "
             "etc/systemd/system/multi-user.target.wants/"
             "systemd-networkd.service");
    ck_assert_int_eq(prep_detect_net_style(disk("n.img"), &s), 0);
    ck_assert_int_eq(s, PREP_NET_NETWORKD);

    /* networkd installed but not enabled: not networkd. */
    fx_image("d.img", "16M", "mkdir -p etc/systemd/network");
    ck_assert_int_eq(prep_detect_net_style(disk("d.img"), &s), 0);
    ck_assert_int_eq(s, PREP_NET_NONE);
}
END_TEST

static void apply_standard(const char *image, enum prep_net_style style)
{
    struct prep_guest_config cfg = {
        .hostname = "web1",
        .guest_ip = "172.16.0.2",
        .gateway_ip = "172.16.0.1",
        .prefix_len = 30,
        .mac = "06:00:ac:10:00:02",
        .authorized_keys = "ssh-ed25519 AAAAC3Nza test@host\n",
        .net_style = style,
    };
    struct prep_patch *patches = NULL;
    char keys[512], known[600], *storage = NULL, *out;
    size_t count = 0;

    snprintf(keys, sizeof(keys), "%s/keys", fx_dir);
    snprintf(known, sizeof(known), "%s/known_hosts", fx_dir);
    mkdir(keys, 0700);
    ck_assert_int_eq(prep_make_host_keys(NULL, "web1", keys, "172.16.0.2",
                                         known), 0);
    cfg.host_keys_dir = keys;
    ck_assert_int_eq(prep_standard_patches(&cfg, &patches, &count,
                                           &storage), 0);
    ck_assert_int_eq(prep_run(NULL, "web1", disk(image), patches, count,
                              NULL), 0);
    free(patches);
    free(storage);
    assert_fsck_clean(image);

    out = guest_cat(image, "/etc/hostname");
    ck_assert_str_eq(out, "web1\n");
    free(out);
    out = guest_cat(image, "/etc/hosts");
    ck_assert_ptr_nonnull(strstr(out, "127.0.0.1\tlocalhost\n"));
    ck_assert_ptr_nonnull(strstr(out, "127.0.1.1\tweb1\n"));
    ck_assert_ptr_nonnull(strstr(out, "::1"));
    free(out);
    out = guest_stat(image, "/root/.ssh");
    ck_assert_ptr_nonnull(strstr(out, "Mode:  0700"));
    free(out);
    out = guest_stat(image, "/root/.ssh/authorized_keys");
    ck_assert_ptr_nonnull(strstr(out, "Mode:  0600"));
    free(out);
    out = guest_cat(image, "/root/.ssh/authorized_keys");
    ck_assert_str_eq(out, "ssh-ed25519 AAAAC3Nza test@host\n");
    free(out);
    out = guest_stat(image, "/etc/ssh/ssh_host_ed25519_key");
    ck_assert_ptr_nonnull(strstr(out, "Mode:  0600"));
    free(out);
    out = guest_stat(image, "/etc/ssh/ssh_host_ed25519_key.pub");
    ck_assert_ptr_nonnull(strstr(out, "Mode:  0644"));
    free(out);
    out = guest_stat(image, "/etc/ssh/ssh_host_rsa_key");
    ck_assert_ptr_nonnull(strstr(out, "File not found"));
    free(out);
    out = guest_stat(image, "/etc/ssh/ssh_host_ecdsa_key.pub");
    ck_assert_ptr_nonnull(strstr(out, "File not found"));
    free(out);
    /* The key in the guest is the one known_hosts vouches for. */
    ck_assert_int_eq(fx_sh("debugfs -R 'cat /etc/ssh/ssh_host_ed25519_key"
                           ".pub' %s 2>/dev/null | cut -d' ' -f2 > %s/g && "
                           "cut -d' ' -f3 %s > %s/k && cmp -s %s/g %s/k",
                           disk(image), fx_dir, known, fx_dir, fx_dir,
                           fx_dir), 0);
}

START_TEST(standard_set_ifupdown)
{
    char *out;

    fx_image("u.img", "32M", "mkdir -p etc/network etc/ssh; "
             "echo old > etc/network/interfaces; "
             "echo rsa > etc/ssh/ssh_host_rsa_key; "
             "echo rsa > etc/ssh/ssh_host_rsa_key.pub; "
             "echo ec > etc/ssh/ssh_host_ecdsa_key.pub");
    apply_standard("u.img", PREP_NET_IFUPDOWN);
    out = guest_cat("u.img", "/etc/network/interfaces");
    ck_assert_ptr_nonnull(strstr(out, "auto lo\niface lo inet loopback\n"));
    ck_assert_ptr_nonnull(strstr(out, "auto eth0\niface eth0 inet static\n"
                                      "    address 172.16.0.2\n"
                                      "    netmask 255.255.255.252\n"
                                      "    gateway 172.16.0.1\n"));
    free(out);
    out = guest_stat("u.img", "/etc/systemd/network/10-eth0.network");
    ck_assert_ptr_nonnull(strstr(out, "File not found"));
    free(out);
}
END_TEST

START_TEST(standard_set_networkd)
{
    char *out;

    fx_image("w.img", "32M", "mkdir -p etc/ssh; "
             "echo dsa > etc/ssh/ssh_host_dsa_key");
    apply_standard("w.img", PREP_NET_NETWORKD);
    out = guest_cat("w.img", "/etc/systemd/network/10-eth0.network");
    ck_assert_ptr_nonnull(strstr(out, "[Match]\nMACAddress=06:00:ac:10:00:02"
                                      "\n"));
    ck_assert_ptr_nonnull(strstr(out, "[Network]\nAddress=172.16.0.2/30\n"
                                      "Gateway=172.16.0.1\n"));
    free(out);
    out = guest_stat("w.img", "/etc/ssh/ssh_host_dsa_key");
    ck_assert_ptr_nonnull(strstr(out, "File not found"));
    free(out);
}
END_TEST

START_TEST(standard_set_bad_config)
{
    struct prep_guest_config cfg = { .hostname = "a b" };
    struct prep_patch *p = NULL;
    char *s = NULL;
    size_t n = 0;

    ck_assert_int_eq(prep_standard_patches(&cfg, &p, &n, &s), VMM_EINVAL);
    ck_assert_vmm_error(VMM_EINVAL, "hostname");
    cfg.hostname = NULL;
    ck_assert_int_eq(prep_standard_patches(&cfg, &p, &n, &s), VMM_EINVAL);
    cfg.hostname = "ok";
    cfg.guest_ip = "10.0.0.2";
    cfg.prefix_len = 33;
    cfg.net_style = PREP_NET_IFUPDOWN;
    ck_assert_int_eq(prep_standard_patches(&cfg, &p, &n, &s), VMM_EINVAL);
    ck_assert_vmm_error(VMM_EINVAL, "prefix length 33");
    cfg.prefix_len = 24;
    cfg.host_keys_dir = "/nonexistent-keys";
    ck_assert_int_eq(prep_standard_patches(&cfg, &p, &n, &s), VMM_ENOTFOUND);
    ck_assert_vmm_error(VMM_ENOTFOUND, "/nonexistent-keys");
    ck_assert_ptr_null(p);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(prep_standard_patches(NULL, &p, &n, &s), VMM_EINVAL);
}
END_TEST

START_TEST(host_keys_kept_across_starts)
{
    char keys[512], known[600], *first, *second;

    snprintf(keys, sizeof(keys), "%s/k", fx_dir);
    snprintf(known, sizeof(known), "%s/known", fx_dir);
    mkdir(keys, 0700);
    ck_assert_int_eq(prep_make_host_keys(NULL, "vm9", keys, "10.1.2.3",
                                         known), 0);
    first = fx_out("cat %s", known);
    ck_assert_int_eq(strncmp(first, "10.1.2.3 ssh-ed25519 AAAA", 25), 0);
    ck_assert_ptr_null(strstr(first, "vm9")); /* no comment */
    ck_assert_int_eq(fx_sh("stat -c %%a %s/ssh_host_ed25519_key | "
                           "grep -qx 600", keys), 0);
    ck_assert_int_eq(prep_make_host_keys(NULL, "vm9", keys, "10.1.2.4",
                                         known), 0);
    second = fx_out("cat %s", known);
    ck_assert_str_eq(first + strlen("10.1.2.3"), second + strlen("10.1.2.4"));
    ck_assert_int_eq(fx_sh("ls -A %s | grep -q tmp", fx_dir), 1);
    free(first);
    free(second);
    ck_assert_int_eq(prep_make_host_keys(NULL, "vm9", keys, "a b", known),
                     VMM_EINVAL);
    ck_assert_int_eq(prep_make_host_keys(NULL, "vm9", "/nonexistent-dir",
                                         "10.1.2.3", known), VMM_EPROCESS);
    ck_assert_vmm_error(VMM_EPROCESS, "ssh-keygen");
}
END_TEST

Suite *suite_make(void)
{
    Suite *s = suite_create("prep");
    TCase *fsck = tcase_create("fsck");
    TCase *patch = tcase_create("patch");
    TCase *std = tcase_create("standard");

    tcase_add_checked_fixture(fsck, fx_setup, fx_teardown);
    tcase_set_timeout(fsck, 60);
    tcase_add_test(fsck, fsck_status_every_bit);
    tcase_add_test(fsck, broken_inode_bitmap_checksum_repaired_then_patched);
    tcase_add_test(fsck, needs_recovery_is_never_written);
    tcase_add_test(fsck, fake_e2fsck_statuses_reach_the_caller);
    tcase_add_test(fsck, zeroed_superblock_fails_cleanly);
    tcase_add_test(fsck, broken_free_blocks_count_repaired_and_logged);
    suite_add_tcase(s, fsck);

    tcase_add_checked_fixture(patch, fx_setup, fx_teardown);
    tcase_set_timeout(patch, 60);
    tcase_add_test(patch, patch_operations);
    tcase_add_test(patch, patch_refusals);
    tcase_add_test(patch, patch_bad_arguments);
    suite_add_tcase(s, patch);

    tcase_add_checked_fixture(std, fx_setup, fx_teardown);
    tcase_set_timeout(std, 60);
    tcase_add_test(std, detect_net_style);
    tcase_add_test(std, standard_set_ifupdown);
    tcase_add_test(std, standard_set_networkd);
    tcase_add_test(std, standard_set_bad_config);
    tcase_add_test(std, host_keys_kept_across_starts);
    suite_add_tcase(s, std);
    return s;
}
