/* SPDX-License-Identifier: MIT */
/*
 * mem: - a store in RAM, with optional emulated latency and bandwidth so
 * that it can stand in for slower memory (the original hmmap's delay knob).
 * fault: - the same store with failures that tests switch on at run time.
 *
 *   mem:SIZE[,read_ns=N][,write_ns=N][,read_bw=SIZE][,write_bw=SIZE]
 *
 * A request takes read_ns (write_ns) plus len / bw when a bandwidth is
 * given, the copy included: a 4 KiB read of "mem:1G,read_ns=300" takes
 * 300 ns as its caller sees it, which is what `hmmap probe` reports. A
 * delay shorter than the copy adds nothing. The latency is per request,
 * so requests of several threads overlap it; the bandwidth is the
 * store's, as a device's is: transfers queue on one timeline per
 * direction, and all threads together move at most bw bytes a second. The wait is a busy wait, like
 * a CPU stalled on a slow medium: sleeping would add the scheduler's
 * latency (tens of microseconds) to every request.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/internal.h"

struct mem_store {
	char *data;
	uint64_t size;
	uint64_t read_ns, write_ns, read_bw, write_bw;
	/* What a caller sees a wait overshoot by (measured when a delay is set). */
	uint64_t own_ns;
	/* When the reads (writes) queued so far will have moved, on hm__now_ns()'s clock. */
	_Atomic uint64_t read_busy, write_busy;
	bool faulty;
	/* fault: knobs; counts of failures left (-1 = always). */
	_Atomic int64_t fail_read, fail_write;
	_Atomic int64_t fail_read_at, fail_write_at; /* byte offset, -1 none */
};

static int mem_opt(void *ctx, const char *k, const char *v)
{
	struct mem_store *m = ctx;
	uint64_t u;
	int rc;

	if (!strcmp(k, "read_ns") || !strcmp(k, "write_ns")) {
		rc = hm_parse_u64(v, &u);
		if (rc || u > 1000000000ull)
			return hm__error(-EINVAL, "mem store: %s='%s' is not a delay in ns (0..1e9)",
					 k, v);
		if (k[0] == 'r')
			m->read_ns = u;
		else
			m->write_ns = u;
		return 0;
	}
	if (!strcmp(k, "read_bw") || !strcmp(k, "write_bw")) {
		rc = hm_parse_size(v, &u);
		if (rc)
			return hm__error(-EINVAL, "mem store: %s='%s' is not a bandwidth in bytes/s",
					 k, v);
		if (k[0] == 'r')
			m->read_bw = u;
		else
			m->write_bw = u;
		return 0;
	}
	return hm__error(-EINVAL, "mem store: unknown option '%s' (known: read_ns, write_ns, "
				  "read_bw, write_bw)",
			 k);
}

/*
 * Waits until the request that started at t0 has taken ns + len / bw as
 * its caller sees it, its transfer starting when the transfers queued
 * before it on *busy are done. The caller also pays for its own clock
 * reads, the one that found t0, the calls in between and the last read of
 * the wait, which overshoots the end: together own_ns, which calibrate()
 * measures, is taken off.
 */
static void wait_until(const struct mem_store *m, uint64_t t0, uint64_t ns, size_t len,
		       uint64_t bw, _Atomic uint64_t *busy)
{
	uint64_t total = ns, end, now, start = t0;

	if (bw) {
		uint64_t tx = (uint64_t)((double)len * 1e9 / (double)bw);
		uint64_t b = atomic_load_explicit(busy, memory_order_relaxed);
		do
			start = b > t0 ? b : t0;
		while (!atomic_compare_exchange_weak_explicit(busy, &b, start + tx,
							      memory_order_relaxed,
							      memory_order_relaxed));
		total += tx;
	}
	total += start - t0; /* queued behind other threads' transfers */
	if (total <= m->own_ns)
		return;
	end = t0 + total - m->own_ns;
	while ((now = hm__now_ns()) < end)
		if (end - now > 500)
			__builtin_ia32_pause(); /* coarse while far; exact near the end */
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * What a caller timing a request sees a wait overshoot by, net of the cost
 * of its own timing (the median of back-to-back clock reads, which hmmap
 * probe takes off too): the median over a few 2 us waits. That is the
 * store's clock read, the wait's last read and the calls. A clock read
 * costs from 20 ns to twice that on average under kvm-clock, so a fixed
 * count of reads taken off missed by up to 10% on a 300 ns delay. Capped:
 * a calibration preempted throughout must not make requests much shorter.
 */
static uint64_t calibrate(struct mem_store *m)
{
	enum { TRIES = 31, SPAN = 2000, CAP = 300 };
	uint64_t d[TRIES], pair[TRIES];

	m->own_ns = 0;
	for (int i = 0; i < TRIES; i++) {
		uint64_t a = hm__now_ns();
		pair[i] = hm__now_ns() - a;
	}
	for (int i = 0; i < TRIES; i++) {
		uint64_t a = hm__now_ns();
		wait_until(m, hm__now_ns(), SPAN, 0, 0, NULL);
		d[i] = hm__now_ns() - a;
	}
	qsort(pair, TRIES, sizeof pair[0], cmp_u64);
	qsort(d, TRIES, sizeof d[0], cmp_u64);
	uint64_t seen = d[TRIES / 2], own = SPAN + pair[TRIES / 2];
	uint64_t over = seen > own ? seen - own : 0;
	return over < CAP ? over : CAP;
}

static int open_common(void **priv, const char *rest, struct hm_store_info *info, bool faulty)
{
	char sizebuf[64];
	const char *comma = strchr(rest, ',');
	size_t n = comma ? (size_t)(comma - rest) : strlen(rest);
	struct mem_store *m;
	uint64_t size;
	int rc;

	if (n == 0 || n >= sizeof sizebuf)
		return hm__error(-EINVAL, "%s store: missing size (e.g. %s:1G)",
				 faulty ? "fault" : "mem", faulty ? "fault" : "mem");
	memcpy(sizebuf, rest, n);
	sizebuf[n] = 0;
	if (hm_parse_size(sizebuf, &size) || size == 0)
		return hm__error(-EINVAL, "%s store: '%s' is not a size",
				 faulty ? "fault" : "mem", sizebuf);
	if (size > (1ull << 46))
		return hm__error(-EINVAL, "%s store: size %s is larger than 64 TiB",
				 faulty ? "fault" : "mem", sizebuf);
	/* hm_opts_parse() takes "" as no options; "mem:1G," is still a typo. */
	if (comma && !comma[1])
		return hm__error(-EINVAL, "%s store: empty option after ',' in '%s'",
				 faulty ? "fault" : "mem", rest);
	m = calloc(1, sizeof *m);
	if (!m)
		return hm__error(-ENOMEM, "out of memory");
	m->faulty = faulty;
	m->fail_read_at = m->fail_write_at = -1;
	rc = hm_opts_parse(comma ? comma + 1 : "", mem_opt, m);
	if (rc) {
		free(m);
		return rc;
	}
	/* Untouched parts of the store cost nothing and read as zeros. */
	m->data = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		       -1, 0);
	if (m->data == MAP_FAILED) {
		rc = -errno;
		free(m);
		return hm__error_errno(rc, "mem store: cannot reserve %s", sizebuf);
	}
	m->size = size;
	if (m->read_ns || m->write_ns || m->read_bw || m->write_bw)
		m->own_ns = calibrate(m);
	memset(info, 0, sizeof *info);
	info->size = size;
	info->props = HM_PROP_BYTE_ADDRESSABLE | HM_PROP_COHERENT;
	info->align = 1;
	*priv = m;
	return 0;
}

static int mem_open(void **priv, const char *rest, int flags, struct hm_store_info *info)
{
	return open_common(priv, rest, info, false);
}

static int fault_open(void **priv, const char *rest, int flags, struct hm_store_info *info)
{
	return open_common(priv, rest, info, true);
}

static void mem_close(void *priv)
{
	struct mem_store *m = priv;

	munmap(m->data, m->size);
	free(m);
}

/* Consumes one failure if the knob says this request fails. */
static bool should_fail(_Atomic int64_t *count, _Atomic int64_t *at, size_t len, uint64_t off)
{
	int64_t a = atomic_load(at);

	if (a >= 0 && (uint64_t)a >= off && (uint64_t)a < off + len)
		return true;
	for (;;) {
		int64_t c = atomic_load(count);
		if (c == 0)
			return false;
		if (c < 0)
			return true;
		if (atomic_compare_exchange_weak(count, &c, c - 1))
			return true;
	}
}

static int mem_read(void *priv, void *buf, size_t len, uint64_t off)
{
	struct mem_store *m = priv;
	size_t n = len;

	if (m->faulty && should_fail(&m->fail_read, &m->fail_read_at, len, off))
		return -EIO;
	uint64_t t0 = m->read_ns || m->read_bw ? hm__now_ns() : 0;
	if (off >= m->size)
		n = 0;
	else if (off + len > m->size)
		n = (size_t)(m->size - off);
	memcpy(buf, m->data + off, n);
	if (n < len)
		memset((char *)buf + n, 0, len - n);
	if (m->read_ns || m->read_bw)
		wait_until(m, t0, m->read_ns, len, m->read_bw, &m->read_busy);
	return 0;
}

static const void *mem_addr(void *priv, uint64_t off, size_t len)
{
	struct mem_store *m = priv;

	if (m->faulty || m->read_ns || m->read_bw || off >= m->size || len > m->size - off)
		return NULL;
	return m->data + off;
}

static int mem_write(void *priv, const void *buf, size_t len, uint64_t off)
{
	struct mem_store *m = priv;

	if (m->faulty && should_fail(&m->fail_write, &m->fail_write_at, len, off))
		return -EIO;
	if (off >= m->size || len > m->size - off)
		return -ENOSPC;
	uint64_t t0 = m->write_ns || m->write_bw ? hm__now_ns() : 0;
	memcpy(m->data + off, buf, len);
	if (m->write_ns || m->write_bw)
		wait_until(m, t0, m->write_ns, len, m->write_bw, &m->write_busy);
	return 0;
}

static int fault_ctl(void *priv, const char *key, const char *value)
{
	struct mem_store *m = priv;
	bool rd = !strncmp(key, "fail_read", 9);
	uint64_t u;
	int64_t v;

	if (!strcmp(key, "fail_read") || !strcmp(key, "fail_write")) {
		/* No value or "always": every request fails; N: the next N; "off". */
		if (!value || !strcmp(value, "always"))
			v = -1;
		else if (!strcmp(value, "off"))
			v = 0;
		else if (hm_parse_u64(value, &u) || u > INT64_MAX)
			return hm__error(-EINVAL, "fault store: %s='%s' is not a count", key, value);
		else
			v = (int64_t)u;
		atomic_store(rd ? &m->fail_read : &m->fail_write, v);
		return 0;
	}
	if (!strcmp(key, "fail_read_at") || !strcmp(key, "fail_write_at")) {
		if (!value)
			return hm__error(-EINVAL, "fault store: %s needs an offset or 'off'", key);
		if (!strcmp(value, "off"))
			v = -1;
		else if (hm_parse_size(value, &u) || u > INT64_MAX)
			return hm__error(-EINVAL, "fault store: %s='%s' is not an offset", key, value);
		else
			v = (int64_t)u;
		atomic_store(rd ? &m->fail_read_at : &m->fail_write_at, v);
		return 0;
	}
	return hm__error(-EINVAL, "fault store: unknown control '%s' (known: fail_read, "
				  "fail_write, fail_read_at, fail_write_at)",
			 key);
}

static int mem_ctl(void *priv, const char *key, const char *value)
{
	return hm__error(-ENOTSUP, "mem store takes no control commands (use fault:)");
}

const struct hm_store_ops hm__store_mem = {
	.abi = HM_STORE_ABI,
	.scheme = "mem",
	.summary = "RAM, with optional emulated latency and bandwidth",
	.open = mem_open,
	.close = mem_close,
	.read = mem_read,
	.write = mem_write,
	.ctl = mem_ctl,
	.addr = mem_addr,
};

const struct hm_store_ops hm__store_fault = {
	.abi = HM_STORE_ABI,
	.scheme = "fault",
	.summary = "RAM with failures switched on by hm_store_ctl() (tests)",
	.open = fault_open,
	.close = mem_close,
	.read = mem_read,
	.write = mem_write,
	.ctl = fault_ctl,
};
