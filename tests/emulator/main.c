/*
 * fc-emulator: a stand-in for the firecracker binary, for tests on hosts
 * without Firecracker or KVM. It takes firecracker's command line, serves
 * Firecracker's HTTP API on the API socket with Firecracker's validation
 * and faults, and exits the way firecracker does. By default no guest
 * runs: the VM "runs" from InstanceStart until SendCtrlAltDel (or an
 * injected exit). With FCEMU_QEMU=1 a real guest boots under QEMU
 * (qemu.c).
 *
 * Environment (failure injection; the library under test only passes its
 * environment through and never knows about these):
 *
 *   FCEMU_TRACE=FILE          append every request to FILE as one JSON line
 *                             {"method","path","body"} (one write() per
 *                             line, O_APPEND: emulators may share FILE)
 *   FCEMU_DELAY_BIND_MS=N     sleep N ms before binding the API socket
 *   FCEMU_DAEMONIZE=1         fork and setsid; the parent exits 0 before the socket
 *                             exists, the child goes on serving
 *   FCEMU_NEVER_BIND=1        never create the socket; sleep until killed
 *   FCEMU_EXIT_EARLY=N        exit with status N before binding, as a
 *                             firecracker failing at start-up does
 *   FCEMU_START_FAULT=TEXT    refuse InstanceStart: 400, fault_message TEXT
 *   FCEMU_HANG_ON="M /path"   never answer requests with method M on /path
 *                             (other connections are still served)
 *   FCEMU_EXIT_AFTER_START=S  S seconds (fractions allowed) after a good
 *                             InstanceStart, exit as the guest or VMM
 *                             ending on its own would:
 *     FCEMU_EXIT_CODE=N       ...with status N (default 0: guest powered
 *                             off; Firecracker's own codes: 1 generic
 *                             error, 148 bad syscall, 150 SIGSEGV, ...)
 *     FCEMU_EXIT_SIGNAL=N     ...or die of signal N (a crash; the socket
 *                             is then left behind, as after a crash)
 *   FCEMU_CTRLALTDEL_MS=N     delay between SendCtrlAltDel and exit 0
 *                             (default 50); negative: the guest ignores
 *                             Ctrl+Alt+Del, so only a signal ends it
 *
 *   FCEMU_QEMU=1              QEMU mode: InstanceStart boots the configured
 *                             guest under qemu-system-x86_64 -M microvm
 *                             (qemu.c); FCEMU_CTRLALTDEL_MS does not apply
 *     FCEMU_QEMU_ACCEL=A      QEMU's -accel (default tcg)
 *     FCEMU_QEMU_BIN=PATH     the QEMU binary (default qemu-system-x86_64)
 *
 * Signals keep their default actions, as in firecracker: SIGTERM and
 * SIGKILL end the process at once.
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
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "emulator.h"

static struct emulator emu = {
	.api_sock = FC_DEFAULT_API_SOCK,
	.instance_id = FC_DEFAULT_INSTANCE_ID,
	.max_payload = FC_DEFAULT_MAX_PAYLOAD,
	.log_level = LOG_INFO,
	.log_fd = 1,
	.metrics_fd = -1,
	.trace_fd = -1,
	.exit_after_start_s = -1,
	.ctrl_alt_del_ms = 50,
};

/* Whether the socket is ours to remove on exit. */
static bool socket_bound;

uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Write a log line whole. The log may be non-blocking: in QEMU mode stdout
 * is shared with QEMU, which makes it so; then wait a little for room.
 * Nowhere is left to complain, and logging must not end the VMM, so a
 * line that still cannot be written is dropped.
 */
static void write_all(int fd, const char *data, size_t len)
{
	int stalls = 0;

	while (len) {
		ssize_t n = write(fd, data, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN && stalls++ < 20) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };

			poll(&pfd, 1, 50);
			continue;
		}
		if (n <= 0)
			return;
		data += n;
		len -= (size_t)n;
	}
}

void emu_log(struct emulator *e, enum log_level level, const char *fmt, ...)
{
	static const char *const names[] = {
		"OFF", "ERROR", "WARN", "INFO", "DEBUG", "TRACE",
	};
	char line[4096];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n;

	if (e->log_fd < 0 || level > e->log_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line),
		     "%04d-%02d-%02dT%02d:%02d:%02d.%09ld [%s:main%s%s%s] ",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		     tm.tm_min, tm.tm_sec, ts.tv_nsec, e->instance_id,
		     e->show_level ? ":" : "",
		     e->show_level ? names[level] : "",
		     e->show_log_origin ? ":fc-emulator" : "");
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	write_all(e->log_fd, line, (size_t)n);
}

void emu_schedule_exit(struct emulator *e, uint64_t delay_ms, int code,
		       int sig)
{
	uint64_t at = now_ms() + delay_ms;

	if (e->exit_at_ms && e->exit_at_ms <= at)
		return;
	e->exit_at_ms = at ? at : 1;
	e->scheduled_exit_code = code;
	e->scheduled_exit_signal = sig;
}

static void remove_socket(void)
{
	if (socket_bound)
		unlink(emu.api_sock);
	socket_bound = false;
}

/* firecracker is built with panic=abort: a bad argument kills it. */
static void __attribute__((noreturn)) panic(const char *fmt, ...)
{
	struct rlimit no_core = { 0, 0 };
	va_list ap;

	fprintf(stderr, "thread 'main' panicked: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	/* Die of SIGABRT like firecracker, without leaving core files. */
	setrlimit(RLIMIT_CORE, &no_core);
	abort();
}

static void __attribute__((noreturn)) arg_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "Error: Arguments parsing error: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " \n\nFor more information try --help.\n");
	exit(FC_EXIT_ARG_PARSING);
}

/* --- command line ---------------------------------------------------- */

enum arg_id {
	A_API_SOCK, A_ID, A_SECCOMP_FILTER, A_NO_SECCOMP, A_START_TIME_US,
	A_START_TIME_CPU_US, A_PARENT_CPU_TIME_US, A_CONFIG_FILE, A_METADATA,
	A_NO_API, A_LOG_PATH, A_LEVEL, A_MODULE, A_SHOW_LEVEL,
	A_SHOW_LOG_ORIGIN, A_METRICS_PATH, A_BOOT_TIMER, A_VERSION,
	A_SNAPSHOT_VERSION, A_DESCRIBE_SNAPSHOT, A_MAX_PAYLOAD,
	A_MMDS_SIZE_LIMIT, A_ENABLE_PCI, A_HELP, A_COUNT
};

static const struct {
	const char *name;
	bool takes_value;
} arg_defs[A_COUNT] = {
	[A_API_SOCK] = { "api-sock", true },
	[A_ID] = { "id", true },
	[A_SECCOMP_FILTER] = { "seccomp-filter", true },
	[A_NO_SECCOMP] = { "no-seccomp", false },
	[A_START_TIME_US] = { "start-time-us", true },
	[A_START_TIME_CPU_US] = { "start-time-cpu-us", true },
	[A_PARENT_CPU_TIME_US] = { "parent-cpu-time-us", true },
	[A_CONFIG_FILE] = { "config-file", true },
	[A_METADATA] = { "metadata", true },
	[A_NO_API] = { "no-api", false },
	[A_LOG_PATH] = { "log-path", true },
	[A_LEVEL] = { "level", true },
	[A_MODULE] = { "module", true },
	[A_SHOW_LEVEL] = { "show-level", false },
	[A_SHOW_LOG_ORIGIN] = { "show-log-origin", false },
	[A_METRICS_PATH] = { "metrics-path", true },
	[A_BOOT_TIMER] = { "boot-timer", false },
	[A_VERSION] = { "version", false },
	[A_SNAPSHOT_VERSION] = { "snapshot-version", false },
	[A_DESCRIBE_SNAPSHOT] = { "describe-snapshot", true },
	[A_MAX_PAYLOAD] = { "http-api-max-payload-size", true },
	[A_MMDS_SIZE_LIMIT] = { "mmds-size-limit", true },
	[A_ENABLE_PCI] = { "enable-pci", false },
	[A_HELP] = { "help", false },
};

struct args {
	bool present[A_COUNT];
	const char *value[A_COUNT];
};

static void parse_args(int argc, char **argv, struct args *a)
{
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		int id = -1;

		if (!strncmp(arg, "--", 2)) {
			for (int j = 0; j < A_COUNT; j++) {
				if (!strcmp(arg + 2, arg_defs[j].name))
					id = j;
			}
		}
		if (id < 0)
			arg_error("Found argument '%s' which wasn't expected, "
				  "or isn't valid in this context.", arg);
		if (a->present[id])
			arg_error("The argument '%s' was provided more than "
				  "once.", arg_defs[id].name);
		a->present[id] = true;
		if (!arg_defs[id].takes_value)
			continue;
		if (i + 1 >= argc || !strncmp(argv[i + 1], "--", 2))
			arg_error("The argument '%s' requires a value, but "
				  "none was supplied.", arg_defs[id].name);
		a->value[id] = argv[++i];
	}
	if (a->present[A_NO_SECCOMP] && a->present[A_SECCOMP_FILTER])
		arg_error("Argument 'no-seccomp' cannot be used together with "
			  "argument 'seccomp-filter'.");
	if (a->present[A_NO_API] && !a->present[A_CONFIG_FILE])
		arg_error("Argument 'no-api' requires 'config-file' to be "
			  "present.");
}

static unsigned long long parse_u64(const char *name, const char *s)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || *s == '-')
		panic("'%s' parameter expected to be of 'u64' type.", name);
	return v;
}

static void check_instance_id(const char *id)
{
	size_t len = strlen(id);

	if (len < 1 || len > 64)
		panic("Invalid instance ID: InvalidLen(%zu, 1, 64)", len);
	for (const char *p = id; *p; p++) {
		if (*p != '-' && !(*p >= 'a' && *p <= 'z') &&
		    !(*p >= 'A' && *p <= 'Z') && !(*p >= '0' && *p <= '9'))
			panic("Invalid instance ID: InvalidChar('%c', %zu)",
			      *p, (size_t)(p - id));
	}
}

static void set_level(const char *s)
{
	static const struct {
		const char *name;
		enum log_level level;
	} levels[] = {
		{ "off", LOG_OFF }, { "error", LOG_ERROR },
		{ "warning", LOG_WARN }, { "warn", LOG_WARN },
		{ "info", LOG_INFO }, { "debug", LOG_DEBUG },
		{ "trace", LOG_TRACE },
	};

	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		if (!strcasecmp(s, levels[i].name)) {
			emu.log_level = levels[i].level;
			return;
		}
	}
	fprintf(stderr, "Error: Invalid value for logger level: %s.Possible "
		"values: [Error, Warning, Info, Debug]\n", s);
	exit(FC_EXIT_BAD_CONFIGURATION);
}

static void apply_args(const struct args *a)
{
	if (a->present[A_HELP] || a->present[A_VERSION]) {
		printf("Firecracker v%s\n\n", FC_VERSION);
		if (a->present[A_HELP])
			printf("fc-emulator takes firecracker's arguments; "
			       "see tests/emulator/README.md.\n");
		printf("(fc-emulator: a Firecracker API emulator for tests; "
		       "it runs no guest)\n");
		exit(FC_EXIT_OK);
	}
	if (a->present[A_SNAPSHOT_VERSION] || a->present[A_DESCRIBE_SNAPSHOT]
	    || a->present[A_CONFIG_FILE] || a->present[A_METADATA]) {
		fprintf(stderr, "Error: snapshots, --config-file and "
			"--metadata are not supported by the Firecracker API "
			"emulator\n");
		exit(FC_EXIT_GENERIC);
	}

	if (a->value[A_API_SOCK])
		emu.api_sock = a->value[A_API_SOCK];
	if (a->value[A_ID])
		emu.instance_id = a->value[A_ID];
	check_instance_id(emu.instance_id);

	if (a->value[A_LEVEL])
		set_level(a->value[A_LEVEL]);
	emu.show_level = a->present[A_SHOW_LEVEL];
	emu.show_log_origin = a->present[A_SHOW_LOG_ORIGIN];
	if (a->value[A_LOG_PATH]) {
		/* firecracker opens the log, it does not create it. */
		emu.log_fd = open(a->value[A_LOG_PATH],
				  O_WRONLY | O_APPEND | O_NONBLOCK | O_CLOEXEC);
		if (emu.log_fd < 0) {
			fprintf(stderr, "Error: Could not initialize logger: "
				"Failed to open target file: %s (os error "
				"%d)\n", strerror(errno), errno);
			exit(FC_EXIT_GENERIC);
		}
	}

	if (a->value[A_START_TIME_US])
		parse_u64("start-time-us", a->value[A_START_TIME_US]);
	if (a->value[A_START_TIME_CPU_US])
		parse_u64("start-time-cpu-us", a->value[A_START_TIME_CPU_US]);
	if (a->value[A_PARENT_CPU_TIME_US])
		parse_u64("parent-cpu-time-us",
			  a->value[A_PARENT_CPU_TIME_US]);
	if (a->value[A_MMDS_SIZE_LIMIT])
		parse_u64("mmds-size-limit", a->value[A_MMDS_SIZE_LIMIT]);
	if (a->value[A_MAX_PAYLOAD])
		emu.max_payload = (size_t)parse_u64("http-api-max-payload-size",
						    a->value[A_MAX_PAYLOAD]);

	if (a->value[A_METRICS_PATH]) {
		emu.metrics_fd = open(a->value[A_METRICS_PATH],
				      O_WRONLY | O_APPEND | O_NONBLOCK |
				      O_CLOEXEC);
		if (emu.metrics_fd < 0) {
			fprintf(stderr, "Error: Could not initialize metrics: "
				"Failed to open target file: %s (os error "
				"%d)\n", strerror(errno), errno);
			exit(FC_EXIT_GENERIC);
		}
	}
	if (a->value[A_SECCOMP_FILTER] &&
	    access(a->value[A_SECCOMP_FILTER], R_OK) < 0) {
		fprintf(stderr, "Error: Seccomp error: Filter open error: %s "
			"(os error %d)\n", strerror(errno), errno);
		exit(FC_EXIT_GENERIC);
	}
}

/* --- knobs ----------------------------------------------------------- */

static long env_long(const char *name, long dflt)
{
	const char *s = getenv(name);
	char *end;
	long v;

	if (!s || !*s)
		return dflt;
	v = strtol(s, &end, 10);
	if (*end) {
		fprintf(stderr, "fc-emulator: %s=%s is not an integer\n", name,
			s);
		exit(FC_EXIT_GENERIC);
	}
	return v;
}

static bool env_flag(const char *name)
{
	const char *s = getenv(name);

	return s && *s && strcmp(s, "0");
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
	}
}

static void read_knobs(void)
{
	const char *s = getenv("FCEMU_EXIT_AFTER_START");
	const char *trace = getenv("FCEMU_TRACE");

	emu.start_fault = getenv("FCEMU_START_FAULT");
	if (emu.start_fault && !*emu.start_fault)
		emu.start_fault = NULL;
	emu.hang_on = getenv("FCEMU_HANG_ON");
	if (s && *s) {
		char *end;

		emu.exit_after_start_s = strtod(s, &end);
		if (*end || emu.exit_after_start_s < 0) {
			fprintf(stderr, "fc-emulator: "
				"FCEMU_EXIT_AFTER_START=%s is not a number "
				"of seconds\n", s);
			exit(FC_EXIT_GENERIC);
		}
	}
	emu.exit_code = (int)env_long("FCEMU_EXIT_CODE", 0);
	emu.exit_signal = (int)env_long("FCEMU_EXIT_SIGNAL", 0);
	emu.ctrl_alt_del_ms = env_long("FCEMU_CTRLALTDEL_MS", 50);
	emu.qemu_mode = env_flag("FCEMU_QEMU");
	emu.qemu_accel = getenv("FCEMU_QEMU_ACCEL");
	if (!emu.qemu_accel || !*emu.qemu_accel)
		emu.qemu_accel = "tcg";
	emu.qemu_bin = getenv("FCEMU_QEMU_BIN");
	if (!emu.qemu_bin || !*emu.qemu_bin)
		emu.qemu_bin = "qemu-system-x86_64";

	if (trace && *trace) {
		emu.trace_fd = open(trace, O_WRONLY | O_APPEND | O_CREAT |
				    O_CLOEXEC, 0644);
		if (emu.trace_fd < 0) {
			fprintf(stderr, "fc-emulator: cannot open FCEMU_TRACE "
				"%s: %s\n", trace, strerror(errno));
			exit(FC_EXIT_GENERIC);
		}
	}
}

/* --- start-up -------------------------------------------------------- */

static int bind_api_socket(void)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	if (strlen(emu.api_sock) >= sizeof(addr.sun_path)) {
		fprintf(stderr, "Error: Failed to open the API socket at: %s: "
			"path too long\n", emu.api_sock);
		return -1;
	}
	/* firecracker refuses a socket path that exists; so do we. */
	if (lstat(emu.api_sock, &st) == 0) {
		fprintf(stderr, "Error: Failed to open the API socket at: %s: "
			"%s (os error %d). Check that it is not already "
			"used.\n", emu.api_sock, strerror(EADDRINUSE),
			EADDRINUSE);
		return -1;
	}
	strcpy(addr.sun_path, emu.api_sock);

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		goto fail;
	socket_bound = true;
	if (listen(fd, 128) < 0)
		goto fail;
	return fd;

fail:
	fprintf(stderr, "Error: Failed to open the API socket at: %s: %s (os "
		"error %d)\n", emu.api_sock, strerror(errno), errno);
	if (fd >= 0)
		close(fd);
	remove_socket();
	return -1;
}

int main(int argc, char **argv)
{
	struct args args = { 0 };
	long early;
	int fd, rc;

	parse_args(argc, argv, &args);
	apply_args(&args);
	read_knobs();
	api_init(&emu);

	early = env_long("FCEMU_EXIT_EARLY", -1);
	if (early >= 0) {
		fprintf(stderr, "Error: fc-emulator: failing at start-up as "
			"FCEMU_EXIT_EARLY=%ld asks\n", early);
		return (int)early;
	}
	if (env_flag("FCEMU_DAEMONIZE")) {
		pid_t pid = fork();

		if (pid < 0) {
			perror("fc-emulator: fork");
			return FC_EXIT_GENERIC;
		}
		if (pid > 0)
			_exit(FC_EXIT_OK);
		/* As daemons do: out of the starter's session and group. */
		setsid();
	}
	if (env_long("FCEMU_DELAY_BIND_MS", 0) > 0)
		sleep_ms(env_long("FCEMU_DELAY_BIND_MS", 0));
	if (env_flag("FCEMU_NEVER_BIND")) {
		for (;;)
			pause();
	}

	fd = bind_api_socket();
	if (fd < 0)
		return FC_EXIT_GENERIC;
	emu_log(&emu, LOG_INFO, "Running Firecracker v%s", FC_VERSION);
	emu_log(&emu, LOG_INFO, "Running Firecracker API emulator (%s) on "
		"socket %s, pid %ld", emu.qemu_mode ? "QEMU mode" : "no guest",
		emu.api_sock, (long)getpid());
	if (emu.log_fd != 1) {
		printf("Running Firecracker API emulator (Firecracker v%s API) "
		       "on socket %s\n", FC_VERSION, emu.api_sock);
		fflush(stdout);
	}

	rc = http_serve(&emu, fd);
	close(fd);
	/* No guest outlives its VMM. */
	qemu_stop(&emu);
	if (rc < 0) {
		fprintf(stderr, "Error: API server failed: %s\n",
			strerror(errno));
		remove_socket();
		return FC_EXIT_GENERIC;
	}

	if (emu.scheduled_exit_signal) {
		/* A crash leaves its socket behind. */
		emu_log(&emu, LOG_ERROR, "Dying of signal %d as "
			"FCEMU_EXIT_SIGNAL asks", emu.scheduled_exit_signal);
		signal(emu.scheduled_exit_signal, SIG_DFL);
		raise(emu.scheduled_exit_signal);
	}
	remove_socket();
	emu_log(&emu, LOG_INFO, "Firecracker exiting %s. exit_code=%d",
		emu.scheduled_exit_code ? "with error" : "successfully",
		emu.scheduled_exit_code);
	return emu.scheduled_exit_code;
}
