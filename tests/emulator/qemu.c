/*
 * QEMU mode (FCEMU_QEMU=1): InstanceStart boots the configured guest under
 * qemu-system-x86_64 -M microvm, so end-to-end tests run a real kernel and
 * root filesystem on hosts without Firecracker or usable KVM.
 *
 * What Firecracker's VMM does, and how it is done here:
 *
 *   serial console on stdout   -serial stdio, stdout shared with QEMU
 *   virtio-mmio block and net  virtio-blk-device / virtio-net-device, in
 *                              configuration order (root device first)
 *   pause, resume, state       QMP stop, cont, query-status
 *   SendCtrlAltDel             QMP send-key into an i8042 keyboard
 *                              controller, as Firecracker's own i8042
 *                              takes it; the guest's init reboots, the
 *                              kernel (reboot=k) resets through the same
 *                              i8042, and -no-reboot turns that into
 *                              QEMU's exit
 *   VMM exits with the guest   QEMU's exit ends the emulator: status 0
 *                              when QEMU exited 0 (guest reset or power
 *                              off), else 1
 *
 * QEMU never outlives the emulator: it gets PR_SET_PDEATHSIG(SIGKILL), and
 * every orderly exit of the emulator kills and reaps it (qemu_stop()).
 *
 * QMP runs over a Unix socket the emulator listens on in a private
 * temporary directory; QEMU connects to it as a client while it starts,
 * and the socket and directory are removed as soon as it has.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "emulator.h"

/* How long QEMU gets to connect to QMP, and to answer a command. */
#define CONNECT_TIMEOUT_MS 10000
#define QMP_TIMEOUT_MS 5000
/* A QEMU that dies this soon after its start fails InstanceStart. */
#define SETTLE_MS 200
#define STDERR_TAIL 1024

/*
 * Firecracker's boot arguments when PUT /boot-source leaves them out
 * (its DEFAULT_KERNEL_CMDLINE).
 */
#define FC_DEFAULT_BOOT_ARGS \
	"reboot=k panic=1 pci=off nomodule 8250.nr_uarts=0 i8042.noaux " \
	"i8042.nomux i8042.nopnp i8042.dumbkbd"

/* The one guest of this process. */
static struct {
	pid_t pid;			/* 0: none running */
	int pidfd;
	int qmp_fd;
	int err_fd;			/* read end of QEMU's stderr */

	char qmp_in[65536];		/* QMP bytes not yet split in lines */
	size_t qmp_len;

	char err_line[512];		/* stderr line being assembled */
	size_t err_line_len;
	char err_tail[STDERR_TAIL];	/* last bytes of stderr */
	size_t err_tail_len;
} guest = { .pidfd = -1, .qmp_fd = -1, .err_fd = -1 };

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* --- argv ------------------------------------------------------------ */

struct argv {
	char **v;
	size_t n;
	size_t cap;
	bool failed;
};

static void arg_add(struct argv *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void arg_add(struct argv *a, const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;

	if (a->failed)
		return;
	if (a->n + 2 > a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		char **v = realloc(a->v, cap * sizeof(*v));

		if (!v) {
			a->failed = true;
			return;
		}
		a->v = v;
		a->cap = cap;
	}
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0) {
		a->failed = true;
		s = NULL;
	}
	va_end(ap);
	if (!s)
		return;
	a->v[a->n++] = s;
	a->v[a->n] = NULL;
}

static void argv_free(struct argv *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
	*a = (struct argv){ 0 };
}

/* A value inside QEMU's "key=value,..." options: commas are doubled. */
static char *opt_value(const char *s)
{
	size_t len = strlen(s), commas = 0;
	char *out, *p;

	for (const char *c = s; *c; c++)
		commas += *c == ',';
	out = malloc(len + commas + 1);
	if (!out)
		return NULL;
	p = out;
	for (const char *c = s; *c; c++) {
		*p++ = *c;
		if (*c == ',')
			*p++ = ',';
	}
	*p = '\0';
	return out;
}

static void add_drive(struct argv *a, size_t i, const struct drive_config *d)
{
	char *file = opt_value(d->path_on_host);

	if (!file) {
		a->failed = true;
		return;
	}
	arg_add(a, "-drive");
	arg_add(a, "id=drive%zu,file=%s,format=raw,if=none%s", i, file,
		d->is_read_only ? ",readonly=on" : "");
	arg_add(a, "-device");
	arg_add(a, "virtio-blk-device,drive=drive%zu", i);
	free(file);
}

static void add_net(struct argv *a, size_t i, const struct net_config *n)
{
	char *tap = opt_value(n->host_dev_name);

	if (!tap) {
		a->failed = true;
		return;
	}
	arg_add(a, "-netdev");
	arg_add(a, "tap,id=net%zu,ifname=%s,script=no,downscript=no", i, tap);
	arg_add(a, "-device");
	if (n->guest_mac)
		arg_add(a, "virtio-net-device,netdev=net%zu,mac=%s", i,
			n->guest_mac);
	else
		arg_add(a, "virtio-net-device,netdev=net%zu", i);
	free(tap);
}

static int build_argv(const struct emulator *emu, const char *qmp_path,
		      struct argv *a)
{
	const struct vm_config *vm = &emu->vm;
	const struct machine_config *m = &vm->machine;

	arg_add(a, "%s", emu->qemu_bin);
	arg_add(a, "-M");
	arg_add(a, "microvm");
	arg_add(a, "-accel");
	arg_add(a, "%s", emu->qemu_accel);
	arg_add(a, "-nodefaults");
	arg_add(a, "-no-user-config");
	arg_add(a, "-nographic");
	arg_add(a, "-no-reboot");
	arg_add(a, "-name");
	arg_add(a, "%s", emu->instance_id);

	arg_add(a, "-smp");
	if (m->smt && m->vcpu_count > 1)
		arg_add(a, "%u,threads=2", m->vcpu_count);
	else
		arg_add(a, "%u", m->vcpu_count);
	arg_add(a, "-m");
	arg_add(a, "%lluM", (unsigned long long)m->mem_size_mib);

	arg_add(a, "-kernel");
	arg_add(a, "%s", vm->kernel_image_path);
	if (vm->initrd_path) {
		arg_add(a, "-initrd");
		arg_add(a, "%s", vm->initrd_path);
	}
	arg_add(a, "-append");
	arg_add(a, "%s", vm->boot_args ? vm->boot_args : FC_DEFAULT_BOOT_ARGS);

	/* Firecracker's keyboard controller: Ctrl+Alt+Del and reboot=k. */
	arg_add(a, "-device");
	arg_add(a, "i8042");
	for (size_t i = 0; i < vm->n_drives; i++)
		add_drive(a, i, &vm->drives[i]);
	for (size_t i = 0; i < vm->n_nets; i++)
		add_net(a, i, &vm->nets[i]);

	arg_add(a, "-serial");
	arg_add(a, "stdio");
	arg_add(a, "-chardev");
	arg_add(a, "socket,id=qmp,path=%s", qmp_path);
	arg_add(a, "-mon");
	arg_add(a, "chardev=qmp,mode=control");
	return a->failed ? -1 : 0;
}

/* --- QEMU's stderr ------------------------------------------------------ */

static void keep_tail(const char *data, size_t len)
{
	if (len >= STDERR_TAIL) {
		data += len - STDERR_TAIL;
		len = STDERR_TAIL;
	}
	if (guest.err_tail_len + len > STDERR_TAIL) {
		size_t drop = guest.err_tail_len + len - STDERR_TAIL;

		memmove(guest.err_tail, guest.err_tail + drop,
			guest.err_tail_len - drop);
		guest.err_tail_len -= drop;
	}
	memcpy(guest.err_tail + guest.err_tail_len, data, len);
	guest.err_tail_len += len;
}

static void log_err_line(struct emulator *emu)
{
	if (!guest.err_line_len)
		return;
	emu_log(emu, LOG_WARN, "QEMU: %.*s", (int)guest.err_line_len,
		guest.err_line);
	guest.err_line_len = 0;
}

/* Read what QEMU wrote to stderr; each line is logged as a warning. */
static void drain_stderr(struct emulator *emu)
{
	char buf[4096];
	ssize_t n;

	while (guest.err_fd >= 0) {
		n = read(guest.err_fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			log_err_line(emu);
			close_fd(&guest.err_fd);
			return;
		}
		keep_tail(buf, (size_t)n);
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n') {
				log_err_line(emu);
			} else if (guest.err_line_len <
				   sizeof(guest.err_line)) {
				guest.err_line[guest.err_line_len++] = buf[i];
			}
		}
	}
}

/* The last lines of QEMU's stderr on one line, "; " between them. */
static void stderr_summary(char *out, size_t size)
{
	size_t n = 0;
	const char *p = guest.err_tail, *end = p + guest.err_tail_len;

	while (p < end && (*p == '\n' || *p == ' '))
		p++;
	for (; p < end && n + 3 < size; p++) {
		if (*p == '\n') {
			if (p + 1 < end) {
				out[n++] = ';';
				out[n++] = ' ';
			}
		} else {
			out[n++] = *p;
		}
	}
	out[n] = '\0';
	if (!n)
		snprintf(out, size, "(nothing on stderr)");
}

/* --- process --------------------------------------------------------- */

static int pidfd_open_(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* Describe a wait status as "exited with status N" / "killed by ...". */
static void describe_status(int status, char *out, size_t size)
{
	if (WIFEXITED(status))
		snprintf(out, size, "exited with status %d",
			 WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(out, size, "was killed by signal %d (%s)",
			 WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		snprintf(out, size, "ended with wait status %#x", status);
}

/* Reap QEMU once it has exited; returns its wait status. */
static int reap(struct emulator *emu)
{
	int status = 0;

	while (waitpid(guest.pid, &status, 0) < 0 && errno == EINTR) {
	}
	drain_stderr(emu);
	close_fd(&guest.pidfd);
	close_fd(&guest.qmp_fd);
	close_fd(&guest.err_fd);
	guest.pid = 0;
	guest.qmp_len = 0;
	return status;
}

void qemu_stop(struct emulator *emu)
{
	char how[96];
	int status;

	if (!guest.pid)
		return;
	kill(guest.pid, SIGKILL);
	status = reap(emu);
	describe_status(status, how, sizeof(how));
	emu_log(emu, LOG_INFO, "Stopped the guest: QEMU %s", how);
}

/*
 * In the child, between fork() and exec: tie QEMU's life to ours, and give
 * it only stdin (/dev/null), stdout (the console, shared with us) and
 * stderr (the pipe).
 */
static void __attribute__((noreturn)) exec_qemu(char **argv, pid_t parent,
						int err_fd)
{
	sigset_t none;
	int null_fd;

	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(127);	/* the parent is already gone */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	null_fd = open("/dev/null", O_RDONLY);
	if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(err_fd, 2) < 0)
		_exit(127);
	if (syscall(SYS_close_range, 3U, ~0U, 0U) < 0) {
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
	}
	execvp(argv[0], argv);
	dprintf(2, "fc-emulator: cannot run %s: %s\n", argv[0],
		strerror(errno));
	_exit(127);
}

/* --- QMP ------------------------------------------------------------- */

static void qmp_event(struct emulator *emu, yajl_val msg)
{
	const char *name = YAJL_GET_STRING(yajl_tree_get(msg,
		(const char *[]){ "event", NULL }, yajl_t_string));
	yajl_val reason = yajl_tree_get(msg,
		(const char *[]){ "data", "reason", NULL }, yajl_t_string);

	if (!name)
		return;
	if (!strcmp(name, "STOP") && emu->state == VM_RUNNING)
		emu->state = VM_PAUSED;
	else if (!strcmp(name, "RESUME") && emu->state == VM_PAUSED)
		emu->state = VM_RUNNING;
	emu_log(emu, LOG_INFO, "QEMU event %s%s%s", name,
		reason ? ": " : "", reason ? YAJL_GET_STRING(reason) : "");
}

/*
 * Take the next complete QMP message out of the buffer. Returns the
 * parsed message (the caller frees it), or NULL when no line is complete.
 */
static yajl_val qmp_take(void)
{
	char *nl = memchr(guest.qmp_in, '\n', guest.qmp_len);
	yajl_val msg;
	size_t len;

	while (nl) {
		*nl = '\0';
		len = (size_t)(nl - guest.qmp_in) + 1;
		msg = yajl_tree_parse(guest.qmp_in, NULL, 0);
		memmove(guest.qmp_in, guest.qmp_in + len,
			guest.qmp_len - len);
		guest.qmp_len -= len;
		if (msg && YAJL_IS_OBJECT(msg))
			return msg;
		yajl_tree_free(msg);
		nl = memchr(guest.qmp_in, '\n', guest.qmp_len);
	}
	return NULL;
}

/* Read what is there. Returns -1 at EOF or on an error. */
static int qmp_read(void)
{
	ssize_t n;

	for (;;) {
		if (guest.qmp_len == sizeof(guest.qmp_in) - 1)
			return -1;	/* a line longer than we take */
		n = recv(guest.qmp_fd, guest.qmp_in + guest.qmp_len,
			 sizeof(guest.qmp_in) - 1 - guest.qmp_len, 0);
		if (n > 0) {
			guest.qmp_len += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		return -1;
	}
}

static bool has_key(yajl_val obj, const char *key)
{
	return yajl_tree_get(obj, (const char *[]){ key, NULL },
			     yajl_t_any) != NULL;
}

/*
 * Wait for a message that is not an event (events met on the way are
 * handled). Returns it (the caller frees it) or NULL, with text in err,
 * when QEMU is gone or silent for timeout_ms.
 */
static yajl_val qmp_wait_reply(struct emulator *emu, int timeout_ms,
			       char *err, size_t size)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		yajl_val msg;
		struct pollfd pfd = { .fd = guest.qmp_fd, .events = POLLIN };
		uint64_t now;

		while ((msg = qmp_take())) {
			if (!has_key(msg, "event"))
				return msg;
			qmp_event(emu, msg);
			yajl_tree_free(msg);
		}
		now = now_ms();
		if (now >= deadline) {
			snprintf(err, size, "QEMU did not answer on QMP within "
				 "%d ms", timeout_ms);
			return NULL;
		}
		if (poll(&pfd, 1, (int)(deadline - now)) < 0 &&
		    errno != EINTR) {
			snprintf(err, size, "poll: %s", strerror(errno));
			return NULL;
		}
		if (pfd.revents && qmp_read() < 0 && !memchr(guest.qmp_in,
			'\n', guest.qmp_len)) {
			snprintf(err, size, "QEMU closed its QMP connection");
			return NULL;
		}
	}
}

/*
 * Run one QMP command (a JSON object as text). Returns 0, or -1 with the
 * reason (QMP's error description or what went wrong) in err.
 */
static int qmp_command(struct emulator *emu, const char *command, char *err,
		       size_t size)
{
	size_t len = strlen(command), off = 0;
	yajl_val reply, desc;
	int rc = 0;

	if (guest.qmp_fd < 0) {
		snprintf(err, size, "the guest is not running");
		return -1;
	}
	while (off < len) {
		ssize_t n = send(guest.qmp_fd, command + off, len - off,
				 MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			struct pollfd pfd = { guest.qmp_fd, POLLOUT, 0 };

			poll(&pfd, 1, QMP_TIMEOUT_MS);
			continue;
		}
		if (n < 0) {
			snprintf(err, size, "cannot send to QMP: %s",
				 strerror(errno));
			return -1;
		}
		off += (size_t)n;
	}

	reply = qmp_wait_reply(emu, QMP_TIMEOUT_MS, err, size);
	if (!reply)
		return -1;
	if (has_key(reply, "error")) {
		desc = yajl_tree_get(reply, (const char *[]){ "error", "desc",
				     NULL }, yajl_t_string);
		snprintf(err, size, "QMP: %s",
			 desc ? YAJL_GET_STRING(desc) : "error");
		rc = -1;
	}
	yajl_tree_free(reply);
	return rc;
}

/* --- start ----------------------------------------------------------- */

/* Wait until QEMU connects to listen_fd; its fd, or -1 with err set. */
static int accept_qmp(struct emulator *emu, int listen_fd, char *err,
		      size_t size)
{
	uint64_t deadline = now_ms() + CONNECT_TIMEOUT_MS;

	for (;;) {
		struct pollfd pfd[3] = {
			{ .fd = listen_fd, .events = POLLIN },
			{ .fd = guest.pidfd, .events = POLLIN },
			{ .fd = guest.err_fd, .events = POLLIN },
		};
		uint64_t now = now_ms();
		int fd;

		if (now >= deadline) {
			snprintf(err, size, "QEMU did not connect to QMP "
				 "within %d ms", CONNECT_TIMEOUT_MS);
			return -1;
		}
		if (poll(pfd, 3, (int)(deadline - now)) < 0) {
			if (errno == EINTR)
				continue;
			snprintf(err, size, "poll: %s", strerror(errno));
			return -1;
		}
		if (pfd[2].revents)
			drain_stderr(emu);
		if (pfd[1].revents) {
			snprintf(err, size, "QEMU ended during its start");
			return -1;
		}
		if (!pfd[0].revents)
			continue;
		fd = accept4(listen_fd, NULL, NULL,
			     SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0)
			return fd;
		if (errno != EAGAIN && errno != EINTR) {
			snprintf(err, size, "accept: %s", strerror(errno));
			return -1;
		}
	}
}

/* Listen on DIR/qmp in a new private directory; the fd or -1. */
static int listen_qmp(char *dir, size_t dir_size, char *path,
		      size_t path_size, char *err, size_t size)
{
	const char *tmp = getenv("TMPDIR");
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd;

	snprintf(dir, dir_size, "%s/fc-emulator-qmp.XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		snprintf(err, size, "cannot make a directory for QMP (%s): %s",
			 dir, strerror(errno));
		dir[0] = '\0';
		return -1;
	}
	snprintf(path, path_size, "%s/qmp", dir);
	if (strlen(path) >= sizeof(addr.sun_path)) {
		snprintf(err, size, "QMP socket path %s is too long", path);
		return -1;
	}
	strcpy(addr.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    listen(fd, 1) < 0) {
		snprintf(err, size, "cannot listen on %s: %s", path,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Watch a freshly started QEMU for ms; -1 if it ended in that time. */
static int settle(struct emulator *emu, int ms)
{
	uint64_t deadline = now_ms() + (uint64_t)ms;
	uint64_t now;

	while ((now = now_ms()) < deadline) {
		struct pollfd pfd[2] = {
			{ .fd = guest.pidfd, .events = POLLIN },
			{ .fd = guest.err_fd, .events = POLLIN },
		};

		if (poll(pfd, guest.err_fd >= 0 ? 2 : 1,
			 (int)(deadline - now)) < 0 && errno != EINTR)
			return 0;
		if (pfd[1].revents)
			drain_stderr(emu);
		if (pfd[0].revents)
			return -1;
	}
	return 0;
}

int qemu_start(struct emulator *emu, char **fault)
{
	char dir[256] = "", path[300], err[512] = "", tail[STDERR_TAIL + 64];
	char how[96];
	struct argv args = { 0 };
	int listen_fd = -1, pipe_fd[2] = { -1, -1 };
	pid_t parent = getpid();
	bool died = false;
	int rc = -1;

	*fault = NULL;
	guest.err_tail_len = 0;
	guest.err_line_len = 0;
	listen_fd = listen_qmp(dir, sizeof(dir), path, sizeof(path), err,
			       sizeof(err));
	if (listen_fd < 0)
		goto out;
	if (build_argv(emu, path, &args) < 0) {
		snprintf(err, sizeof(err), "out of memory");
		goto out;
	}
	if (pipe2(pipe_fd, O_CLOEXEC) < 0) {
		snprintf(err, sizeof(err), "pipe: %s", strerror(errno));
		goto out;
	}

	fflush(NULL);
	guest.pid = fork();
	if (guest.pid < 0) {
		guest.pid = 0;
		snprintf(err, sizeof(err), "fork: %s", strerror(errno));
		goto out;
	}
	if (guest.pid == 0)
		exec_qemu(args.v, parent, pipe_fd[1]);

	close_fd(&pipe_fd[1]);
	guest.err_fd = pipe_fd[0];
	pipe_fd[0] = -1;
	fcntl(guest.err_fd, F_SETFL, O_NONBLOCK);
	guest.pidfd = pidfd_open_(guest.pid);
	if (guest.pidfd < 0) {
		snprintf(err, sizeof(err), "pidfd_open: %s", strerror(errno));
		goto out;
	}

	guest.qmp_fd = accept_qmp(emu, listen_fd, err, sizeof(err));
	/* Nothing else may connect, and nothing is left behind. */
	close_fd(&listen_fd);
	unlink(path);
	rmdir(dir);
	dir[0] = '\0';
	if (guest.qmp_fd < 0)
		goto out;

	/* The greeting, then leave negotiation mode. */
	yajl_tree_free(qmp_wait_reply(emu, QMP_TIMEOUT_MS, err, sizeof(err)));
	if (err[0] || qmp_command(emu, "{\"execute\":\"qmp_capabilities\"}",
				  err, sizeof(err)) < 0)
		goto out;
	if (settle(emu, SETTLE_MS) < 0) {
		snprintf(err, sizeof(err), "QEMU ended during its start");
		goto out;
	}
	rc = 0;
	emu_log(emu, LOG_INFO, "Booting the guest under QEMU (pid %ld, "
		"accel %s)", (long)guest.pid, emu->qemu_accel);

out:
	if (rc < 0) {
		if (guest.pid) {
			/* Give a dying QEMU a moment to say why. */
			died = settle(emu, 100) < 0;
			kill(guest.pid, SIGKILL);
			describe_status(reap(emu), how, sizeof(how));
		}
		stderr_summary(tail, sizeof(tail));
		/* When QEMU died, how it died says more than our side. */
		if (asprintf(fault, "Failed to start the guest under %s: "
			     "%s%s; QEMU's stderr: %s", emu->qemu_bin,
			     died ? "QEMU " : "", died ? how : err,
			     tail) < 0)
			*fault = NULL;
		emu_log(emu, LOG_ERROR, "%s", *fault ? *fault : err);
	}
	close_fd(&listen_fd);
	close_fd(&pipe_fd[0]);
	close_fd(&pipe_fd[1]);
	if (dir[0]) {
		unlink(path);
		rmdir(dir);
	}
	argv_free(&args);
	return rc;
}

/* --- running guest ----------------------------------------------------- */

int qemu_set_paused(struct emulator *emu, bool paused, char **fault)
{
	char err[256];

	if (qmp_command(emu, paused ? "{\"execute\":\"stop\"}" :
			"{\"execute\":\"cont\"}", err, sizeof(err)) < 0) {
		if (asprintf(fault, "Failed to %s the guest: %s",
			     paused ? "pause" : "resume", err) < 0)
			*fault = NULL;
		return -1;
	}
	emu->state = paused ? VM_PAUSED : VM_RUNNING;
	return 0;
}

int qemu_ctrl_alt_del(struct emulator *emu, char **fault)
{
	static const char keys[] =
		"{\"execute\":\"send-key\",\"arguments\":{\"keys\":["
		"{\"type\":\"qcode\",\"data\":\"ctrl\"},"
		"{\"type\":\"qcode\",\"data\":\"alt\"},"
		"{\"type\":\"qcode\",\"data\":\"delete\"}]}}";
	char err[256];

	if (qmp_command(emu, keys, err, sizeof(err)) < 0) {
		if (asprintf(fault, "Failed to send Ctrl+Alt+Del: %s",
			     err) < 0)
			*fault = NULL;
		return -1;
	}
	emu_log(emu, LOG_INFO, "Sent Ctrl+Alt+Del to the guest's keyboard "
		"controller");
	return 0;
}

void qemu_refresh_state(struct emulator *emu)
{
	static const char query[] = "{\"execute\":\"query-status\"}\n";
	yajl_val reply, running;
	char err[256];

	if (guest.qmp_fd < 0 ||
	    send(guest.qmp_fd, query, sizeof(query) - 1, MSG_NOSIGNAL) < 0)
		return;
	reply = qmp_wait_reply(emu, QMP_TIMEOUT_MS, err, sizeof(err));
	running = reply ? yajl_tree_get(reply, (const char *[]){ "return",
					"running", NULL }, yajl_t_any) : NULL;
	if (running)
		emu->state = YAJL_IS_TRUE(running) ? VM_RUNNING : VM_PAUSED;
	yajl_tree_free(reply);
}

size_t qemu_poll_fds(struct pollfd *fds)
{
	size_t n = 0;

	if (!guest.pid)
		return 0;
	fds[n++] = (struct pollfd){ .fd = guest.pidfd, .events = POLLIN };
	fds[n++] = (struct pollfd){ .fd = guest.qmp_fd, .events = POLLIN };
	fds[n++] = (struct pollfd){ .fd = guest.err_fd, .events = POLLIN };
	return n;
}

void qemu_poll_events(struct emulator *emu, const struct pollfd *fds,
		      size_t n)
{
	char how[96];
	yajl_val msg;
	int status;

	if (n < QEMU_POLL_FDS || !guest.pid)
		return;
	if (fds[2].revents)
		drain_stderr(emu);
	if (fds[1].revents && guest.qmp_fd >= 0) {
		if (qmp_read() < 0)
			close_fd(&guest.qmp_fd);
		while ((msg = qmp_take())) {
			if (has_key(msg, "event"))
				qmp_event(emu, msg);
			yajl_tree_free(msg);
		}
	}
	if (!fds[0].revents)
		return;

	/* QEMU is gone: the guest reset, powered off or QEMU failed. */
	status = reap(emu);
	describe_status(status, how, sizeof(how));
	emu_log(emu, LOG_INFO, "The guest has ended: QEMU %s", how);
	emu_schedule_exit(emu, 0, WIFEXITED(status) && !WEXITSTATUS(status) ?
			  FC_EXIT_OK : FC_EXIT_GENERIC, 0);
}
