/*
 * A minimal HTTP/1.1 server for the API socket: one thread, poll(),
 * keep-alive connections, Content-Length bodies, pipelined requests.
 * It frames requests and responses; api.c decides what they mean.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "emulator.h"

#define MAX_CONNS 256
#define MAX_HEADER 8192

struct conn {
	int fd;
	char *in;
	size_t in_len;
	size_t in_cap;
	char *out;
	size_t out_len;
	size_t out_off;
	bool hung;		/* FCEMU_HANG_ON: read nothing more */
	bool close_after;	/* "Connection: close" */
	bool sent_continue;
};

static struct conn conns[MAX_CONNS];
static size_t n_conns;

static const char *reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 413: return "Payload Too Large";
	case 500: return "Internal Server Error";
	default: return "";
	}
}

static int append_out(struct conn *c, const char *data, size_t len)
{
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;

	char *p = realloc(c->out, c->out_len + len);

	if (!p)
		return -1;
	c->out = p;
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
	return 0;
}

static int queue_response(struct conn *c, int status, const char *body)
{
	char head[256];
	int n;

	/* Firecracker's micro_http names itself and keeps connections open. */
	if (status == 204) {
		n = snprintf(head, sizeof(head),
			     "HTTP/1.1 204 %s\r\nServer: Firecracker API\r\n"
			     "Connection: keep-alive\r\n\r\n", reason(204));
		return append_out(c, head, (size_t)n);
	}

	size_t len = body ? strlen(body) : 0;

	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 %d %s\r\nServer: Firecracker API\r\n"
		     "Connection: %s\r\nContent-Type: application/json\r\n"
		     "Content-Length: %zu\r\n\r\n", status, reason(status),
		     c->close_after ? "close" : "keep-alive", len);
	if (append_out(c, head, (size_t)n) < 0)
		return -1;
	return len ? append_out(c, body, len) : 0;
}

static void queue_fault(struct conn *c, int status, const char *message)
{
	char *body = api_fault_body(message);

	queue_response(c, status, body);
	free(body);
}

/* Case-insensitive header lookup inside [head, end); value is trimmed. */
static bool header_value(const char *head, const char *end, const char *name,
			 char *value, size_t size)
{
	size_t name_len = strlen(name);
	const char *line = strstr(head, "\r\n");

	while (line && line + 2 < end) {
		line += 2;

		const char *eol = strstr(line, "\r\n");

		if (!eol || eol > end)
			break;
		if ((size_t)(eol - line) > name_len && line[name_len] == ':' &&
		    !strncasecmp(line, name, name_len)) {
			const char *v = line + name_len + 1;
			size_t len;

			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			len = (size_t)(eol - v);
			while (len && (v[len - 1] == ' ' || v[len - 1] == '\t'))
				len--;
			if (len >= size)
				len = size - 1;
			memcpy(value, v, len);
			value[len] = '\0';
			return true;
		}
		line = eol;
	}
	return false;
}

static void consume(struct conn *c, size_t n)
{
	memmove(c->in, c->in + n, c->in_len - n);
	c->in_len -= n;
}

/*
 * Answer every complete request buffered on c. Returns -1 when the
 * connection must be dropped after what was queued is flushed.
 */
static int process_input(struct emulator *emu, struct conn *c)
{
	while (!c->hung && !c->close_after) {
		char method[16], target[1024], version[16], value[64];
		char *head_end;
		size_t head_len, body_len = 0;

		if (c->in_len == 0)
			return 0;
		c->in[c->in_len] = '\0';
		head_end = strstr(c->in, "\r\n\r\n");
		if (!head_end) {
			if (c->in_len > MAX_HEADER) {
				c->close_after = true;
				queue_fault(c, 400,
					    "Request headers too large.");
				return -1;
			}
			return 0;
		}
		head_len = (size_t)(head_end - c->in) + 4;

		if (sscanf(c->in, "%15s %1023s %15s", method, target,
			   version) != 3 || strncmp(version, "HTTP/1.", 7)) {
			c->close_after = true;
			queue_fault(c, 400, "Invalid HTTP request line.");
			return -1;
		}
		if (header_value(c->in, head_end + 2, "Connection", value,
				 sizeof(value)) && !strcasecmp(value, "close"))
			c->close_after = true;
		if (header_value(c->in, head_end + 2, "Transfer-Encoding",
				 value, sizeof(value))) {
			c->close_after = true;
			queue_fault(c, 400, "Transfer-Encoding is not "
				    "supported; send a Content-Length.");
			return -1;
		}
		if (header_value(c->in, head_end + 2, "Content-Length", value,
				 sizeof(value))) {
			char *endp;
			unsigned long long n = strtoull(value, &endp, 10);

			if (*endp || endp == value) {
				c->close_after = true;
				queue_fault(c, 400, "Invalid Content-Length.");
				return -1;
			}
			if (n > emu->max_payload) {
				char text[160];

				snprintf(text, sizeof(text),
					 "Request payload with size %llu is "
					 "larger than the limit of %zu allowed "
					 "by server.", n, emu->max_payload);
				c->close_after = true;
				queue_fault(c, 400, text);
				return -1;
			}
			body_len = (size_t)n;
		}

		if (c->in_len < head_len + body_len) {
			/* curl waits for this before sending a large body. */
			if (!c->sent_continue &&
			    header_value(c->in, head_end + 2, "Expect", value,
					 sizeof(value)) &&
			    !strcasecmp(value, "100-continue")) {
				static const char cont[] =
					"HTTP/1.1 100 Continue\r\n\r\n";

				append_out(c, cont, sizeof(cont) - 1);
				c->sent_continue = true;
			}
			return 0;
		}
		c->sent_continue = false;

		struct http_response resp = { 0 };
		char *body = c->in + head_len;
		char saved = body[body_len];

		body[body_len] = '\0';
		api_handle(emu, method, target, body_len ? body : NULL,
			   body_len, &resp);
		body[body_len] = saved;
		consume(c, head_len + body_len);

		if (resp.status == 0) {
			/* Never answer, and read nothing after it either. */
			c->hung = true;
		} else if (queue_response(c, resp.status, resp.body) < 0) {
			free(resp.body);
			return -1;
		}
		free(resp.body);
	}
	return c->close_after ? -1 : 0;
}

static void drop_conn(size_t i)
{
	close(conns[i].fd);
	free(conns[i].in);
	free(conns[i].out);
	conns[i] = conns[--n_conns];
}

static void accept_all(int listen_fd)
{
	for (;;) {
		int fd = accept4(listen_fd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
		if (n_conns == MAX_CONNS) {
			close(fd);
			continue;
		}
		conns[n_conns++] = (struct conn){ .fd = fd };
	}
}

/* Returns 0 while the connection lives, -1 once it should be dropped. */
static int read_conn(struct emulator *emu, struct conn *c)
{
	for (;;) {
		if (c->in_cap - c->in_len < 4097) {
			size_t cap = c->in_cap ? c->in_cap * 2 : 8192;
			char *p = realloc(c->in, cap);

			if (!p)
				return -1;
			c->in = p;
			c->in_cap = cap;
		}

		ssize_t n = recv(c->fd, c->in + c->in_len,
				 c->in_cap - c->in_len - 1, 0);

		if (n == 0)
			return -1;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -1;
		}
		c->in_len += (size_t)n;
	}
	return process_input(emu, c) < 0 && c->out_off == c->out_len ? -1 : 0;
}

static int flush_conn(struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off,
				 c->out_len - c->out_off, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -1;
		}
		c->out_off += (size_t)n;
	}
	return c->close_after ? -1 : 0;
}

static int poll_timeout(struct emulator *emu)
{
	uint64_t now;

	if (!emu->exit_at_ms)
		return -1;
	now = now_ms();
	return emu->exit_at_ms <= now ? 0 : (int)(emu->exit_at_ms - now);
}

int http_serve(struct emulator *emu, int listen_fd)
{
	static struct pollfd fds[MAX_CONNS + 1 + QEMU_POLL_FDS];

	for (;;) {
		int timeout = poll_timeout(emu);

		if (timeout == 0)
			return 0;

		fds[0] = (struct pollfd){ .fd = listen_fd, .events = POLLIN };
		for (size_t i = 0; i < n_conns; i++) {
			struct conn *c = &conns[i];
			short ev = c->hung ? 0 : POLLIN;

			if (c->out_off < c->out_len)
				ev |= POLLOUT;
			fds[i + 1] = (struct pollfd){ .fd = c->fd,
						      .events = ev };
		}

		size_t n_fds = n_conns + 1;
		size_t n_guest = qemu_poll_fds(&fds[n_fds]);
		int n = poll(fds, n_fds + n_guest, timeout);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}

		/* Walk backwards: drop_conn moves the last entry into i. */
		for (size_t i = n_conns; i-- > 0;) {
			struct conn *c = &conns[i];
			short rev = fds[i + 1].revents;
			bool dead = false;

			if (!rev)
				continue;
			if (rev & (POLLERR | POLLNVAL))
				dead = true;
			if (!dead && (rev & POLLIN))
				dead = read_conn(emu, c) < 0;
			else if (!dead && (rev & POLLHUP))
				dead = true;
			if (!dead && c->out_off < c->out_len)
				dead = flush_conn(c) < 0;
			else if (!dead && c->close_after && !c->hung)
				dead = true;
			if (dead)
				drop_conn(i);
		}
		if (fds[0].revents & POLLIN)
			accept_all(listen_fd);
		qemu_poll_events(emu, &fds[n_fds], n_guest);
	}
}
