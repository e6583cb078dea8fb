/* SPDX-License-Identifier: MIT */
/*
 * Trace readers and the replay engine; see replay.h.
 *
 * Replay is built for speed: the trace is parsed once into an array of keys
 * and dense ids, so the replay loop indexes two arrays (id -> slot, slot ->
 * id) and calls the policy's hooks; it never hashes or allocates. The policy
 * itself hashes keys only for its ghosts.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "hmmap.h"
#include "core/error.h"
#include "core/replay.h"

#define NO_SLOT UINT32_MAX
#define ORACLE_RECORD 24

/* ---- dense ids ---------------------------------------------------------- */

struct idmap {
	uint64_t *keys;
	uint32_t *ids; /* NO_SLOT: empty bucket */
	uint64_t mask;
	uint32_t count;
};

static inline uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

static int idmap_init(struct idmap *m, uint64_t size)
{
	uint64_t i;

	m->keys = malloc(size * sizeof *m->keys);
	m->ids = malloc(size * sizeof *m->ids);
	if (!m->keys || !m->ids) {
		free(m->keys);
		free(m->ids);
		return -ENOMEM;
	}
	for (i = 0; i < size; i++)
		m->ids[i] = NO_SLOT;
	m->mask = size - 1;
	m->count = 0;
	return 0;
}

static void idmap_fini(struct idmap *m)
{
	free(m->keys);
	free(m->ids);
}

static void idmap_put(struct idmap *m, uint64_t key, uint32_t id)
{
	uint64_t i = mix(key) & m->mask;

	while (m->ids[i] != NO_SLOT)
		i = (i + 1) & m->mask;
	m->keys[i] = key;
	m->ids[i] = id;
}

/* The id of `key`, assigning the next one on first sight: 0 or -ENOMEM. */
static int idmap_get(struct idmap *m, uint64_t key, uint32_t *id)
{
	uint64_t i = mix(key) & m->mask;

	for (; m->ids[i] != NO_SLOT; i = (i + 1) & m->mask) {
		if (m->keys[i] == key) {
			*id = m->ids[i];
			return 0;
		}
	}
	if (m->count == NO_SLOT - 1)
		return -ENOMEM;
	if (2 * ((uint64_t)m->count + 1) > m->mask + 1) {
		struct idmap bigger;
		uint64_t j;

		if (idmap_init(&bigger, 2 * (m->mask + 1)))
			return -ENOMEM;
		for (j = 0; j <= m->mask; j++)
			if (m->ids[j] != NO_SLOT)
				idmap_put(&bigger, m->keys[j], m->ids[j]);
		bigger.count = m->count;
		idmap_fini(m);
		*m = bigger;
	}
	*id = m->count++;
	idmap_put(m, key, *id);
	return 0;
}

/* ---- building a trace ----------------------------------------------------- */

struct builder {
	struct hm__trace *t;
	uint64_t cap;
	struct idmap map;
};

static int builder_init(struct builder *b, struct hm__trace *t, uint64_t hint)
{
	memset(t, 0, sizeof *t);
	b->t = t;
	b->cap = hint > 16 ? hint : 16;
	t->keys = malloc(b->cap * sizeof *t->keys);
	t->ids = malloc(b->cap * sizeof *t->ids);
	if (!t->keys || !t->ids || idmap_init(&b->map, 1024)) {
		free(t->keys);
		free(t->ids);
		return -ENOMEM;
	}
	return 0;
}

static int builder_add(struct builder *b, uint64_t key)
{
	struct hm__trace *t = b->t;
	uint32_t id;

	if (t->n == b->cap) {
		uint64_t *k = realloc(t->keys, 2 * b->cap * sizeof *k);
		uint32_t *i;

		if (!k)
			return -ENOMEM;
		t->keys = k;
		i = realloc(t->ids, 2 * b->cap * sizeof *i);
		if (!i)
			return -ENOMEM;
		t->ids = i;
		b->cap *= 2;
	}
	if (idmap_get(&b->map, key, &id))
		return -ENOMEM;
	t->keys[t->n] = key;
	t->ids[t->n++] = id;
	return 0;
}

static void builder_done(struct builder *b, int ok)
{
	b->t->nids = b->map.count;
	idmap_fini(&b->map);
	if (!ok)
		hm__trace_free(b->t);
}

int hm__trace_from_keys(struct hm__trace *t, const uint64_t *keys, uint64_t n)
{
	struct builder b;
	uint64_t i;

	if (builder_init(&b, t, n))
		return hm__error(-ENOMEM, "out of memory for a trace of %llu requests",
				 (unsigned long long)n);
	for (i = 0; i < n; i++) {
		if (builder_add(&b, keys[i])) {
			builder_done(&b, 0);
			return hm__error(-ENOMEM, "out of memory for the trace");
		}
	}
	builder_done(&b, 1);
	return 0;
}

void hm__trace_free(struct hm__trace *t)
{
	free(t->keys);
	free(t->ids);
	free(t->next);
	memset(t, 0, sizeof *t);
}

/* ---- parsers -------------------------------------------------------------- */

static int is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Strict decimal uint64: 0 or -1. */
static int parse_id(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (!len)
		return -1;
	for (i = 0; i < len; i++) {
		unsigned d = (unsigned)(s[i] - '0');

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

static void trim(const char **s, size_t *len)
{
	while (*len && is_blank(**s)) {
		(*s)++;
		(*len)--;
	}
	while (*len && is_blank((*s)[*len - 1]))
		(*len)--;
}

/* Whether a line holds only printable ASCII, blanks and UTF-8. */
static int is_text(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c < 0x20 && !is_blank((char)c)) || c == 0x7f)
			return 0;
	}
	return 1;
}

static int parse_text(struct builder *b, const char *name, const char *buf, size_t len,
		      const struct hm__trace_opts *o)
{
	unsigned column = o->column ? o->column : 1;
	int csv = o->format == HM_TRACE_CSV;
	uint64_t lineno = 0, key;
	size_t pos = 0;

	while (pos < len) {
		const char *line = buf + pos, *nl = memchr(line, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - line) : len - pos;
		const char *f = line;
		size_t flen = n;

		pos += n + (nl ? 1 : 0);
		lineno++;
		trim(&f, &flen);
		if (csv && o->header && lineno == 1)
			continue;
		if (!flen || f[0] == '#')
			continue;
		if (csv) {
			const char *p = line, *end = line + n, *comma;
			unsigned k;

			for (k = 1; k < column; k++) {
				comma = memchr(p, ',', (size_t)(end - p));
				if (!comma)
					return hm__error(-EINVAL, "%s:%llu: no column %u (the line has %u)",
							 name, (unsigned long long)lineno, column, k);
				p = comma + 1;
			}
			comma = memchr(p, ',', (size_t)(end - p));
			f = p;
			flen = (size_t)((comma ? comma : end) - p);
			trim(&f, &flen);
			if (flen >= 2 && f[0] == '"' && f[flen - 1] == '"') {
				f++;
				flen -= 2;
				trim(&f, &flen);
			}
		}
		if (parse_id(f, flen, &key)) {
			if (!is_text(line, n))
				return hm__error(-EINVAL, "%s:%llu: not text (a binary trace? "
							  "--format oracle reads libCacheSim's)",
						 name, (unsigned long long)lineno);
			return hm__error(-EINVAL, "%s:%llu: not a page id: '%.*s'", name,
					 (unsigned long long)lineno, flen > 40 ? 40 : (int)flen, f);
		}
		if (builder_add(b, key))
			return hm__error(-ENOMEM, "%s:%llu: out of memory", name,
					 (unsigned long long)lineno);
	}
	return 0;
}

static uint64_t le64(const unsigned char *p)
{
	uint64_t v = 0;
	int i;

	for (i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static int parse_oracle(struct builder *b, const char *name, const unsigned char *buf,
			size_t len)
{
	size_t i, n = len / ORACLE_RECORD;

	for (i = 0; i < n; i++)
		if (builder_add(b, le64(buf + i * ORACLE_RECORD + 4)))
			return hm__error(-ENOMEM, "%s: out of memory", name);
	if (len % ORACLE_RECORD)
		return hm__error(-EINVAL, "%s: record %zu is truncated (%zu of %d bytes)", name,
				 n + 1, len % ORACLE_RECORD, ORACLE_RECORD);
	return 0;
}

/* Whether the name's last `n` characters before `end` are `suffix`, any case. */
static int ends_with(const char *base, size_t len, const char *suffix)
{
	size_t n = strlen(suffix);

	return len >= n && !strncasecmp(base + len - n, suffix, n);
}

int hm__trace_guess_format(const char *path)
{
	const char *base = strrchr(path, '/');
	size_t len;

	base = base ? base + 1 : path;
	len = strlen(base);
	/* A compressed trace is named for what it holds: x.csv.zst is CSV. */
	if (ends_with(base, len, ".zst"))
		len -= 4;
	else if (ends_with(base, len, ".zstd"))
		len -= 5;
	if (ends_with(base, len, ".csv"))
		return HM_TRACE_CSV;
	if (memmem(base, len, "oracleGeneral", 13) || ends_with(base, len, ".bin"))
		return HM_TRACE_ORACLE;
	return HM_TRACE_LINES;
}

int hm__trace_parse(struct hm__trace *t, const char *name, const void *buf, size_t len,
		    const struct hm__trace_opts *o)
{
	struct hm__trace_opts opts = *o;
	struct builder b;
	size_t hint;
	int rc;

	if (!opts.format)
		opts.format = hm__trace_guess_format(name);
	if (opts.format < HM_TRACE_LINES || opts.format > HM_TRACE_ORACLE)
		return hm__error(-EINVAL, "%s: unknown trace format %d", name, opts.format);
	hint = opts.format == HM_TRACE_ORACLE ? len / ORACLE_RECORD : len / 8;
	if (builder_init(&b, t, hint < (1u << 24) ? hint : (1u << 24)))
		return hm__error(-ENOMEM, "%s: out of memory", name);
	if (opts.format == HM_TRACE_ORACLE)
		rc = parse_oracle(&b, name, buf, len);
	else
		rc = parse_text(&b, name, buf, len, &opts);
	builder_done(&b, rc == 0);
	return rc;
}

#define ZSTD_MAGIC "\x28\xb5\x2f\xfd"

/*
 * Decompresses a zstd stream (one or more frames) into a new buffer.
 * Errors name the file; 0 or -errno.
 */
static int unzstd(const char *path, const char *in, size_t inlen, char **out, size_t *outlen)
{
	ZSTD_DStream *z = ZSTD_createDStream();
	ZSTD_inBuffer ib = { in, inlen, 0 };
	size_t cap = inlen * 4 + (1 << 20), got = 0;
	char *buf = malloc(cap);
	int rc = 0;

	if (!z || !buf) {
		rc = hm__error(-ENOMEM, "out of memory decompressing trace '%s'", path);
		goto out;
	}
	ZSTD_initDStream(z);
	for (;;) {
		if (got == cap) {
			char *nbuf = cap < SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
			if (!nbuf) {
				rc = hm__error(-ENOMEM, "out of memory decompressing trace '%s'",
					       path);
				goto out;
			}
			buf = nbuf;
			cap *= 2;
		}
		ZSTD_outBuffer ob = { buf, cap, got };
		size_t ret = ZSTD_decompressStream(z, &ob, &ib);
		got = ob.pos;
		if (ZSTD_isError(ret)) {
			rc = hm__error(-EINVAL, "%s: bad zstd data near byte %zu: %s", path, ib.pos,
				       ZSTD_getErrorName(ret));
			goto out;
		}
		if (ib.pos == ib.size && !ret)
			break; /* every frame whole and flushed */
		if (ib.pos == ib.size && ob.pos < ob.size) {
			rc = hm__error(-EINVAL, "%s: the zstd data is truncated", path);
			goto out;
		}
	}
out:
	ZSTD_freeDStream(z);
	if (rc) {
		free(buf);
		return rc;
	}
	*out = buf;
	*outlen = got;
	return 0;
}

int hm__trace_load(struct hm__trace *t, const char *path, const struct hm__trace_opts *o)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0, got;
	ssize_t r;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return hm__error_errno(-errno, "cannot open trace '%s'", path);
	if (fstat(fd, &st)) {
		rc = hm__error_errno(-errno, "cannot stat trace '%s'", path);
		goto out;
	}
	/* A regular file is read in one go (one spare byte sees EOF); pipes grow. */
	len = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 1 << 20;
	buf = malloc(len);
	for (got = 0; buf;) {
		if (got == len) {
			char *nbuf = realloc(buf, 2 * len);

			if (!nbuf)
				break;
			buf = nbuf;
			len *= 2;
		}
		r = read(fd, buf + got, len - got);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			rc = hm__error_errno(-errno, "cannot read trace '%s'", path);
			goto out;
		}
		if (!r)
			break;
		got += (size_t)r;
	}
	if (!buf || got == len) {
		rc = hm__error(-ENOMEM, "out of memory reading trace '%s'", path);
		goto out;
	}
	if (got >= 4 && !memcmp(buf, ZSTD_MAGIC, 4)) {
		/* libCacheSim's traces come zstd-compressed. */
		char *plain;
		size_t plen;

		rc = unzstd(path, buf, got, &plain, &plen);
		if (rc)
			goto out;
		free(buf);
		buf = plain;
		got = plen;
	} else if (got >= 2 && (unsigned char)buf[0] == 0x1f && (unsigned char)buf[1] == 0x8b) {
		rc = hm__error(-EINVAL, "%s: a gzip-compressed trace; decompress it first "
					"(zstd-compressed ones are read as they are)", path);
		goto out;
	}
	rc = hm__trace_parse(t, path, buf, got, o);
out:
	free(buf);
	close(fd);
	return rc;
}

int hm__trace_next_use(struct hm__trace *t)
{
	uint64_t *last, i;

	if (t->next)
		return 0;
	t->next = malloc((t->n ? t->n : 1) * sizeof *t->next);
	last = malloc(((size_t)t->nids + 1) * sizeof *last);
	if (!t->next || !last) {
		free(t->next);
		free(last);
		t->next = NULL;
		return hm__error(-ENOMEM, "out of memory for next-use times");
	}
	for (i = 0; i < t->nids; i++)
		last[i] = UINT64_MAX;
	for (i = t->n; i-- > 0;) {
		t->next[i] = last[t->ids[i]];
		last[t->ids[i]] = i;
	}
	free(last);
	return 0;
}

/* ---- replay --------------------------------------------------------------- */

int hm__replay_run(struct hm__trace *t, const char *spec, uint32_t capacity,
		   struct hm__replay_result *r)
{
	const struct hm_policy_ops *ops;
	const char *options;
	uint32_t *slot_of = NULL, *id_of = NULL, used = 0, s;
	const uint64_t *next = NULL;
	void *st = NULL;
	uint64_t i, misses = 0;
	int rc;

	rc = hm_policy_lookup(spec, &ops, &options);
	if (rc)
		return rc;
	if (!capacity)
		return hm__error(-EINVAL, "the cache must hold at least one page");
	if (ops->flags & HM_POLICY_REPLAY_ONLY) {
		if (!ops->next_use)
			return hm__error(-EINVAL, "%s: replay-only policy without next_use()",
					 ops->name);
		rc = hm__trace_next_use(t);
		if (rc)
			return rc;
		next = t->next;
	}
	/*
	 * A cache that holds every distinct page never evicts: its misses are
	 * the first touches whatever the policy, and a run at nids pages is the
	 * same run. Sizing the policy by what was asked for could take
	 * gigabytes for a trace of a few pages.
	 */
	if (capacity > t->nids)
		capacity = t->nids ? t->nids : 1;
	slot_of = malloc(((size_t)t->nids + 1) * sizeof *slot_of);
	id_of = malloc((size_t)capacity * sizeof *id_of);
	if (!slot_of || !id_of) {
		rc = hm__error(-ENOMEM, "out of memory for a cache of %u pages", capacity);
		goto out;
	}
	memset(slot_of, 0xff, ((size_t)t->nids + 1) * sizeof *slot_of);
	rc = ops->create(&st, capacity, options);
	if (rc)
		goto out;

	for (i = 0; i < t->n; i++) {
		uint32_t id = t->ids[i];

		s = slot_of[id];
		if (s != NO_SLOT) {
			ops->hit(st, s);
		} else {
			misses++;
			if (ops->miss)
				ops->miss(st, t->keys[i]);
			if (used < capacity) {
				s = used++;
			} else {
				rc = ops->victim(st, &s);
				if (rc || s >= capacity) {
					rc = hm__error(-EIO, "%s: victim() failed (%d, slot %u) "
							     "with a full cache at request %llu",
						       ops->name, rc, s, (unsigned long long)i + 1);
					goto out;
				}
				slot_of[id_of[s]] = NO_SLOT;
			}
			ops->insert(st, s, t->keys[i]);
			slot_of[id] = s;
			id_of[s] = id;
		}
		if (next)
			ops->next_use(st, s, next[i]);
	}
	r->requests = t->n;
	r->misses = misses;
	rc = 0;
out:
	if (st)
		ops->destroy(st);
	free(slot_of);
	free(id_of);
	return rc;
}
