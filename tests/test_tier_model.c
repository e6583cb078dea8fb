/* SPDX-License-Identifier: MIT */
/*
 * A model-based random tester for tier chains. Driven by HMMAP_TEST_SEED
 * (default 1), each episode builds a random chain (two to four tiers from
 * dram:, mem:, lz4:, zstd: and file:, small enough that tiers fill up,
 * sometimes explicit-only or emergency, sometimes mapped through the API
 * form with 8 or 16 KiB pages) and runs a random sequence of operations on
 * it: writes, reads, hm_bind() with every flag, hm_move() and its query
 * form, hm_store_evacuate(), reopening and flag changes, the tiering engine
 * switched on and off, hm_sync(), hm_advise() and partial hmunmap(). Every
 * byte is checked against a shadow copy in ordinary memory, every status
 * against what docs/tiers.md promises for the model's view of where a page
 * may be, and the tiers' statistics against the per-page query whenever
 * they hold still. A second thread writes and verifies its own partition
 * of the region throughout, while the main thread moves, binds and
 * evacuates pages including that partition: no update may be lost.
 *
 * Bounded by operation counts, never by time. On a mismatch it prints the
 * seed, the episode, the operation's index and the tail of the history.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hmmap.h"
#include "harness.h"
#include "testutil.h"

#define CPG  4096u /* a chain page */
#define MAXT 4     /* tiers, DRAM included */
#define MAXN 160   /* region pages */
#define HIST 400   /* operations kept for a failure report */
#define PART 4     /* region pages the second thread owns */

/* ---- the history and failure report ---- */

static char hist[HIST][200];
static uint64_t hist_n;
static uint64_t g_seed;
static int g_ep;
static const char *g_mode = "thread";
static char g_uri[1100];

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(hist[hist_n % HIST], sizeof hist[0], fmt, ap);
	va_end(ap);
	hist_n++;
}

static void dump_history(FILE *f)
{
	uint64_t first = hist_n > HIST ? hist_n - HIST : 0;

	fprintf(f,
	        "seed %llu, fault mode %s, episode %d, op %llu, chain %s; the last operations:\n",
	        (unsigned long long)g_seed, g_mode, g_ep,
	        (unsigned long long)(hist_n ? hist_n - 1 : 0), g_uri);
	for (uint64_t i = first; i < hist_n; i++)
		fprintf(f, "  #%llu %s\n", (unsigned long long)i, hist[i % HIST]);
	fflush(f);
}

/* A SIGBUS or SIGSEGV the model did not expect: say where, then die of it. */
static void on_fatal(int sig)
{
	char buf[96];
	int n = snprintf(buf, sizeof buf, "\nsignal %d in seed %llu episode %d op %llu\n", sig,
	                 (unsigned long long)g_seed, g_ep, (unsigned long long)hist_n);

	if (n > 0 && write(2, buf, (size_t)n) < 0)
		_exit(3);
	/* In sigbus mode the fault ran in this thread: its message says why it failed. */
	fprintf(stderr, "the thread's last hmmap error: %s\n", hm_errormsg());
	dump_history(stderr);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* ---- the model ---- */

enum kind { K_MEM = 1, K_LZ4, K_ZSTD, K_FILE };

struct tier {
	enum kind kind;
	uint64_t slots; /* 4 KiB slots (compressed: the space offered) */
	bool explicit_, emergency, backstop;
};

struct model {
	uint64_t rnd;
	char uri[1024];
	int nt;
	struct tier t[MAXT];
	struct hm_store *ch, *ts[MAXT];
	bool api; /* hm_store_open + hm_region_map, not hmmap() */
	struct hm_region *r;
	char *p;
	size_t n, ps, pp; /* region pages, page size, chain pages per page */
	uint64_t budget;  /* DRAM tier in region pages */
	unsigned char *shadow;
	bool live[MAXN], written[MAXN];
	/*
	 * Written as zeros while every tier that could take it was closed
	 * (the backstop between its evacuation and its reopening): such a
	 * page goes nowhere on its next eviction, as documented.
	 */
	bool zero_gone_ok[MAXN];
	int bind[MAXN];      /* 0 default, t + 1 bound to tier t */
	bool settled[MAXN];  /* bound to a lower tier and seen in it or DRAM since */
	unsigned sent[MAXN]; /* explicit tiers hm_bind/hm_move sent the page to */
	unsigned closed;     /* tiers an evacuation closed and nobody reopened */
	bool engine;
	bool engine_ever; /* the engine may load a page never written (a promotion) */
	/* The second thread's partition [0, PART). */
	pthread_t th;
	_Atomic int stop, pause_req, paused, bad;
	_Atomic uint64_t rounds;
	char bad_msg[256];
	uint64_t tshadow[PART][512]; /* of the first 4 KiB of each page */
};

static uint64_t rn(struct model *m, uint64_t n)
{
	return n ? tu_rnd(&m->rnd) % n : 0;
}

static bool chance(struct model *m, int pct)
{
	return (int)rn(m, 100) < pct;
}

static unsigned char *sh(struct model *m, size_t i)
{
	return m->shadow + i * m->ps;
}

static bool all_zero(const unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

static bool implicit(const struct model *m, int t)
{
	return t > 0 && (!m->t[t].explicit_ || m->t[t].emergency);
}

/* ---- the second thread ---- */

static void *part_main(void *arg)
{
	struct model *m = arg;
	uint64_t s = g_seed ^ 0xabcdefull, v = 1;

	while (!atomic_load(&m->stop)) {
		if (atomic_load(&m->pause_req)) {
			atomic_store(&m->paused, 1);
			while (atomic_load(&m->pause_req) && !atomic_load(&m->stop))
				sched_yield();
			atomic_store(&m->paused, 0);
			continue;
		}
		for (int j = 0; j < PART; j++) {
			volatile uint64_t *w = (volatile uint64_t *)(m->p + (size_t)j * m->ps);
			for (int k = 0; k < 4; k++) {
				unsigned at = (unsigned)(tu_rnd(&s) % 512);
				w[at] = v;
				m->tshadow[j][at] = v++;
			}
			for (unsigned at = 0; at < 512; at++) {
				if (w[at] != m->tshadow[j][at]) {
					snprintf(m->bad_msg, sizeof m->bad_msg,
					         "partition page %d word %u: %#llx, want %#llx "
					         "(round %llu)",
					         j, at, (unsigned long long)w[at],
					         (unsigned long long)m->tshadow[j][at],
					         (unsigned long long)atomic_load(&m->rounds));
					atomic_store(&m->bad, 1);
					return NULL;
				}
			}
		}
		atomic_fetch_add(&m->rounds, 1);
	}
	return NULL;
}

static void part_pause(struct model *m)
{
	atomic_store(&m->pause_req, 1);
	while (!atomic_load(&m->paused) && !atomic_load(&m->bad) && !atomic_load(&m->stop))
		sched_yield();
}

static void part_resume(struct model *m)
{
	atomic_store(&m->pause_req, 0);
	while (atomic_load(&m->paused))
		sched_yield();
}

/* ---- failures ---- */

static char fail_msg[2048];

#define MFAIL(...)                                                                                 \
	do {                                                                                       \
		snprintf(fail_msg, sizeof fail_msg, __VA_ARGS__);                                  \
		return -1;                                                                         \
	} while (0)
#define MCHECK(cond, ...)                                                                          \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			int n_ =                                                                   \
			    snprintf(fail_msg, sizeof fail_msg, "line %d: %s: ", __LINE__, #cond); \
			if (n_ > 0 && (size_t)n_ < sizeof fail_msg)                                \
				snprintf(fail_msg + n_, sizeof fail_msg - (size_t)n_,              \
				         __VA_ARGS__);                                             \
			return -1;                                                                 \
		}                                                                                  \
	} while (0)

/* ---- building a chain ---- */

static int build(struct model *m)
{
	char el[MAXT][600];
	int nl, backstop;

	m->nt = 2 + (int)rn(m, 3);
	nl = m->nt - 1;
	m->api = chance(m, 35);
	m->ps = m->api ? (size_t)CPG << rn(m, 3) : CPG;
	m->pp = m->ps / CPG;
	m->n = (64 + rn(m, 97)) / m->pp; /* 64..160 chain pages */
	if (m->n < PART + 8)
		m->n = PART + 8;
	uint64_t npg = m->n * m->pp;
	/* DRAM: 16..48 chain pages, at least 4 region pages. */
	uint64_t dram = 16 + rn(m, 33);
	if (dram < 16 * m->pp)
		dram = 16 * m->pp;
	dram = dram / m->pp * m->pp;
	m->budget = dram / m->pp;
	/* The last implicit tier, the backstop, holds every page alone. */
	backstop = 1 + (int)rn(m, (uint64_t)nl);
	for (int t = 1; t < m->nt; t++) {
		struct tier *ti = &m->t[t];
		char path[512];
		ti->backstop = t == backstop;
		ti->kind = (enum kind)(1 + rn(m, 4));
		ti->slots = ti->backstop ? npg + 16 + rn(m, npg) : 8 + rn(m, npg / 2);
		if (!ti->backstop && chance(m, 25)) {
			ti->explicit_ = true;
			ti->emergency = chance(m, 30);
		}
		const char *pre = ti->emergency ? "emergency:" : ti->explicit_ ? "explicit:" : "";
		switch (ti->kind) {
		case K_MEM:
			snprintf(el[t], sizeof el[t], "%smem:%lluK", pre,
			         (unsigned long long)ti->slots * 4);
			break;
		case K_LZ4:
		case K_ZSTD:
			/*
			 * The pool holds every page raw; the space offered is
			 * the slots.
			 */
			snprintf(el[t], sizeof el[t], "%s%s:%lluK,space=%lluK%s", pre,
			         ti->kind == K_LZ4 ? "lz4" : "zstd",
			         (unsigned long long)ti->slots * (ti->backstop ? 8 : 4) + 64,
			         (unsigned long long)ti->slots * 4,
			         ti->kind == K_LZ4 && chance(m, 30) ? ",level=3" : "");
			break;
		case K_FILE: {
			char name[64];
			snprintf(name, sizeof name, "tier-%d-%d", g_ep, t);
			tu_path(path, sizeof path, name);
			int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
			if (fd < 0 || ftruncate(fd, (off_t)(ti->slots * CPG))) {
				if (fd >= 0)
					close(fd);
				MFAIL("cannot make %s", path);
			}
			close(fd);
			snprintf(el[t], sizeof el[t], "%sfile:%s", pre, path);
			break;
		}
		}
	}
	m->engine = chance(m, 40);
	m->engine_ever = m->engine;
	int len = snprintf(m->uri, sizeof m->uri, "tiers:dram:%lluK,tiering=%s,period=20",
	                   (unsigned long long)dram * 4, m->engine ? "hotness" : "none");
	for (int t = 1; t < m->nt; t++)
		len += snprintf(m->uri + len, sizeof m->uri - (size_t)len, " > %s", el[t]);
	snprintf(g_uri, sizeof g_uri, "%s (%zu pages of %zu bytes, %s)", m->uri, m->n, m->ps,
	         m->api ? "API" : "hmmap()");
	note("chain %s, %zu pages of %zu bytes, %s form", m->uri, m->n, m->ps,
	     m->api ? "API" : "hmmap()");
	if (m->api) {
		struct hm_cache *c;
		int rc = hm_store_open(&m->ch, m->uri, 0);
		MCHECK(rc == 0, "open %s: %d %s", m->uri, rc, hm_errormsg());
		rc = hm_chain_cache(m->ch, &c);
		MCHECK(rc == 0, "%d %s", rc, hm_errormsg());
		rc = hm_region_map(&m->r, c, m->ch, 0, m->n * m->ps, PROT_READ | PROT_WRITE,
		                   HM_CACHED, m->ps);
		MCHECK(rc == 0, "map: %d %s", rc, hm_errormsg());
		m->p = hm_region_addr(m->r);
	} else {
		m->p = hmmap(NULL, m->n * m->ps, PROT_READ | PROT_WRITE, HM_CACHED, m->uri, 0);
		MCHECK(m->p != MAP_FAILED, "hmmap %s: %s", m->uri, hm_errormsg());
		m->r = hm_region_find(m->p);
		m->ch = hm_region_store(m->r);
	}
	MCHECK(hm_chain_tiers(m->ch) == m->nt, "%d tiers", hm_chain_tiers(m->ch));
	for (int t = 0; t < m->nt; t++)
		m->ts[t] = hm_chain_tier(m->ch, t);
	m->shadow = calloc(m->n, m->ps);
	MCHECK(m->shadow, "out of memory");
	for (size_t i = 0; i < m->n; i++)
		m->live[i] = true;
	return 0;
}

/* ---- checks ---- */

static int query(struct model *m, size_t i0, size_t n, int *st)
{
	void *pages[MAXN];

	for (size_t i = 0; i < n; i++)
		pages[i] = m->p + (i0 + i) * m->ps;
	long rc = hm_move(n, pages, NULL, st, 0);
	MCHECK(rc == 0, "query returned %ld: %s", rc, hm_errormsg());
	return 0;
}

/* Whether status s is a place the model allows page i to be. */
static int check_where(struct model *m, size_t i, int s)
{
	if (!m->live[i]) {
		MCHECK(s == -EFAULT, "unmapped page %zu: status %d", i, s);
		return 0;
	}
	if (s == -ENOENT) {
		/*
		 * A page written as zeros goes nowhere only when no tier may
		 * take it at all; the backstop always may (it is reopened at
		 * once after an evacuation).
		 */
		MCHECK(!m->written[i] || (m->zero_gone_ok[i] && all_zero(sh(m, i), m->ps)),
		       "written page %zu is nowhere (zeros %d)", i, all_zero(sh(m, i), m->ps));
		return 0;
	}
	MCHECK(s >= 0 && s < m->nt, "page %zu: status %d", i, s);
	MCHECK(!(m->closed & (1u << s)), "page %zu in tier %d, closed by an evacuation", i, s);
	if (s > 0 && m->t[s].explicit_ && !m->t[s].emergency)
		MCHECK(m->sent[i] & (1u << s), "page %zu in explicit tier %d, never sent there", i,
		       s);
	if (m->bind[i] == 1)
		MCHECK(s == 0, "page %zu bound to DRAM is in tier %d", i, s);
	if (m->bind[i] > 1 && m->settled[i])
		MCHECK(s == 0 || s == m->bind[i] - 1, "page %zu bound to tier %d is in tier %d", i,
		       m->bind[i] - 1, s);
	if (m->bind[i] > 1 && (s == 0 || s == m->bind[i] - 1) &&
	    !(m->closed & (1u << (m->bind[i] - 1))))
		m->settled[i] = true;
	return 0;
}

static int check_query_all(struct model *m)
{
	int st[MAXN];

	if (query(m, 0, m->n, st))
		return -1;
	for (size_t i = 0; i < m->n; i++)
		if (check_where(m, i, st[i]))
			return -1;
	return 0;
}

static int check_data(struct model *m, size_t i0, size_t n)
{
	for (size_t i = i0; i < i0 + n; i++) {
		if (i < PART || !m->live[i])
			continue;
		long long off = tu_cmp_mem((unsigned char *)m->p + i * m->ps, sh(m, i), m->ps);
		MCHECK(off < 0, "page %zu byte %lld: %#x, want %#x", i, off,
		       (unsigned char)m->p[i * m->ps + (size_t)off], sh(m, i)[off]);
	}
	return 0;
}

static int tier_pages(struct model *m, uint64_t *pages)
{
	struct hm_tier_stats s;

	for (int t = 0; t < m->nt; t++) {
		int rc = hm_tier_stats(m->ts[t], &s);
		MCHECK(rc == 0, "stats of tier %d: %d %s", t, rc, hm_errormsg());
		MCHECK(s.used_bytes <= s.capacity_bytes || t == 0,
		       "tier %d uses %llu of %llu bytes", t, (unsigned long long)s.used_bytes,
		       (unsigned long long)s.capacity_bytes);
		MCHECK(s.pages || t == 0 || s.used_bytes == 0,
		       "tier %d holds no page but uses %llu bytes", t,
		       (unsigned long long)s.used_bytes);
		pages[t] = s.pages;
	}
	return 0;
}

/*
 * With the second thread paused: the tiers' page counts equal the query's,
 * whenever two readings around the query agree (the evictor or the engine
 * may still move pages; a reading that moves is not a failure, only not a
 * check).
 */
static int check_stats(struct model *m)
{
	uint64_t a[MAXT], b[MAXT], q[MAXT];
	int st[MAXN];

	part_pause(m);
	for (int tries = 0; tries < 3; tries++) {
		if (tier_pages(m, a) || query(m, 0, m->n, st) || tier_pages(m, b))
			goto fail;
		if (memcmp(a, b, sizeof(uint64_t) * (size_t)m->nt))
			continue;
		memset(q, 0, sizeof q);
		for (size_t i = 0; i < m->n; i++)
			if (st[i] >= 0 && st[i] < m->nt)
				q[st[i]] += st[i] == 0 ? 1 : m->pp;
		size_t dead = 0;
		for (size_t i = 0; i < m->n; i++)
			dead += !m->live[i];
		for (int t = 1; t < m->nt; t++) {
			/* An API-form chain keeps the pages of unmapped parts. */
			if (m->api && dead && q[t] <= a[t])
				continue;
			/*
			 * The 4 KiB parts of a larger page may lie in several
			 * tiers; the query names one: only the sum is exact.
			 */
			if (m->pp > 1)
				continue;
			if (q[t] != a[t]) {
				int l = snprintf(
				    fail_msg, sizeof fail_msg,
				    "tier %d holds %llu pages, the query finds %llu; tiers:", t,
				    (unsigned long long)a[t], (unsigned long long)q[t]);
				for (int u = 0; u < m->nt; u++)
					l += snprintf(fail_msg + l, sizeof fail_msg - (size_t)l,
					              " %llu/%llu", (unsigned long long)a[u],
					              (unsigned long long)q[u]);
				if (getenv("HMMAP_MODEL_DEBUG")) {
					usleep(300000);
					tier_pages(m, b);
					query(m, 0, m->n, st);
					memset(q, 0, sizeof q);
					for (size_t i = 0; i < m->n; i++)
						if (st[i] >= 0 && st[i] < m->nt)
							q[st[i]] += st[i] == 0 ? 1 : m->pp;
					l += snprintf(fail_msg + l, sizeof fail_msg - (size_t)l,
					              "; later:");
					for (int u = 0; u < m->nt; u++)
						l += snprintf(
						    fail_msg + l, sizeof fail_msg - (size_t)l,
						    " %llu/%llu", (unsigned long long)b[u],
						    (unsigned long long)q[u]);
				}
				goto fail;
			}
		}
		uint64_t sa = 0, sq = 0;
		for (int t = 1; t < m->nt; t++)
			sa += a[t], sq += q[t];
		if (sa != sq && !(m->api && dead && sq <= sa)) {
			snprintf(fail_msg, sizeof fail_msg,
			         "the lower tiers hold %llu pages, the query finds %llu",
			         (unsigned long long)sa, (unsigned long long)sq);
			goto fail;
		}
		for (int t = 1; t < m->nt; t++) {
			if ((m->closed & (1u << t)) && a[t]) {
				snprintf(fail_msg, sizeof fail_msg,
				         "closed tier %d holds %llu pages", t,
				         (unsigned long long)a[t]);
				goto fail;
			}
		}
		break;
	}
	part_resume(m);
	return 0;
fail:
	part_resume(m);
	return -1;
}

/* ---- operations ---- */

/* A random run of live pages [*i0, *i0 + *n) of at most max pages; false if none. */
static bool pick_range(struct model *m, size_t max, size_t *i0, size_t *n, bool avoid_part)
{
	for (int tries = 0; tries < 16; tries++) {
		size_t lo = avoid_part ? PART : 0;
		size_t s = lo + rn(m, m->n - lo);
		if (!m->live[s])
			continue;
		size_t want = 1 + rn(m, max), k = 0;
		while (k < want && s + k < m->n && m->live[s + k])
			k++;
		*i0 = s;
		*n = k;
		return true;
	}
	return false;
}

static size_t pick_page(struct model *m, bool avoid_part)
{
	size_t i0, n;

	return pick_range(m, 1, &i0, &n, avoid_part) ? i0 : SIZE_MAX;
}

static int op_write(struct model *m)
{
	size_t i = pick_page(m, true);

	if (i == SIZE_MAX)
		return 0;
	if (!m->written[i] && m->closed)
		return 0; /* new pages need room a closed tier no longer offers */
	unsigned char *d = (unsigned char *)m->p + i * m->ps, *s = sh(m, i);
	int how = (int)rn(m, 10);
	if (how < 6) {
		int k = 1 + (int)rn(m, 8);
		note("write %d words of page %zu", k, i);
		for (int j = 0; j < k; j++) {
			size_t at = rn(m, m->ps / 8) * 8;
			uint64_t v = tu_rnd(&m->rnd);
			memcpy(d + at, &v, 8);
			memcpy(s + at, &v, 8);
		}
	} else if (how < 8) {
		note("write page %zu random", i);
		tu_fill(s, m->ps, tu_rnd(&m->rnd));
		memcpy(d, s, m->ps);
	} else if (how < 9) {
		note("write page %zu text", i);
		for (size_t j = 0; j < m->ps; j++)
			s[j] = (unsigned char)("abcdefgh 0123\n"[(j + i) % 14]);
		memcpy(d, s, m->ps);
	} else {
		note("write page %zu zeros", i);
		memset(s, 0, m->ps);
		memset(d, 0, m->ps);
	}
	m->written[i] = true;
	m->zero_gone_ok[i] = false;
	return 0;
}

static int op_read(struct model *m)
{
	size_t i0, n;

	if (!pick_range(m, 16, &i0, &n, true))
		return 0;
	note("read %zu+%zu", i0, n);
	return check_data(m, i0, n);
}

static int op_bind(struct model *m)
{
	size_t i0, n;
	int st[MAXN], after[MAXN];

	if (!pick_range(m, 12, &i0, &n, false))
		return 0;
	int t = (int)rn(m, (uint64_t)m->nt);
	static const int fl[] = {HM_BIND, HM_MIGRATE, HM_BIND | HM_MIGRATE, HM_BIND_DEFAULT};
	int f = fl[rn(m, 4)];
	bool dram_bound = false;
	size_t bound = 0;
	for (size_t i = 0; i < m->n; i++)
		bound += m->live[i] && m->bind[i] > 0;
	for (size_t i = i0; i < i0 + n; i++)
		dram_bound |= m->bind[i] == 1;
	/*
	 * Pages bound to a full lower tier stay in DRAM, and DRAM bindings
	 * pin theirs: together they could leave faults no room (documented),
	 * so they keep to half the budget, with the second thread's pages
	 * beside them.
	 */
	if ((f & HM_BIND) && bound + n + PART > m->budget / 2)
		f = HM_BIND_DEFAULT;
	if (query(m, i0, n, st))
		return -1;
	note("bind %zu+%zu to tier %d flags %#x", i0, n, f == HM_BIND_DEFAULT ? -1 : t, f);
	for (size_t i = i0; i < i0 + n && t > 0 && m->t[t].explicit_; i++)
		if (f != HM_BIND_DEFAULT)
			m->sent[i] |= 1u << t;
	long rc = hm_bind(m->p + i0 * m->ps, n * m->ps, f == HM_BIND_DEFAULT ? NULL : m->ts[t], f);
	note("  -> %ld %s", rc, rc < 0 ? hm_errormsg() : "");
	if (f == HM_BIND_DEFAULT) {
		MCHECK(rc == 0, "%ld", rc);
		for (size_t i = i0; i < i0 + n; i++)
			m->bind[i] = 0, m->settled[i] = false;
		return 0;
	}
	if (t == 0 && (f & HM_BIND)) {
		/* -ENOSPC: the pages it evicts to make room have nowhere to go. */
		MCHECK(rc >= 0 || rc == -ENOMEM || rc == -ENOSPC, "DRAM binding: %ld", rc);
		if (rc >= 0)
			for (size_t i = i0; i < i0 + n; i++)
				m->bind[i] = 1;
		return 0;
	}
	if (f == HM_MIGRATE && t > 0 && dram_bound) {
		MCHECK(rc == -EBUSY, "a migration down over a DRAM binding: %ld", rc);
		return 0;
	}
	if (f == HM_MIGRATE && t == 0 && n * m->ps > m->budget * m->ps / 2) {
		MCHECK(rc == -ENOMEM, "a migration up over half the budget: %ld", rc);
		return 0;
	}
	for (size_t i = i0; i < i0 + n; i++) {
		if (f & HM_BIND)
			m->bind[i] = t + 1;
		m->settled[i] = false;
	}
	if (f == HM_BIND) {
		MCHECK(rc == 0, "%ld", rc);
		return 0;
	}
	/* A migration. */
	MCHECK(rc >= 0 || rc == -ENOSPC, "migration: %ld %s", rc, hm_errormsg());
	MCHECK(rc <= (long)n, "migration of %zu pages moved %ld", n, rc);
	if (t > 0 && (m->closed & (1u << t))) {
		/*
		 * The second thread's pages do not count: its fault may bring
		 * one up after the migration's drop went by, and then the
		 * migration finds it in no lower tier (the range stays usable
		 * while it moves).
		 */
		size_t movable = 0;
		for (size_t i = i0 < PART ? PART : i0; i < i0 + n; i++)
			movable += st[i - i0] > 0 && st[i - i0] != t;
		MCHECK(rc == -ENOSPC || movable == 0, "migration to closed tier %d: %ld", t, rc);
	}
	if (query(m, i0, n, after))
		return -1;
	for (size_t i = i0; i < i0 + n; i++) {
		if (check_where(m, i, after[i - i0]))
			return -1;
		if (i < PART || rc < 0)
			continue;
		int s = after[i - i0];
		if (!m->written[i]) {
			if (t > 0)
				MCHECK(s == -ENOENT || (s == 0 && m->engine_ever),
				       "page %zu never written is in %d after a migration to %d", i,
				       s, t);
			else
				MCHECK(
				    s == -ENOENT || (s == 0 && (st[i - i0] == 0 || m->engine_ever)),
				    "page %zu never written is in %d after a migration up", i, s);
			continue;
		}
		if (s == -ENOENT)
			continue; /* a page of zeros with nowhere to go */
		if (t == 0 || (s == 0 && m->engine_ever))
			continue; /* up: the cache may evict it again at once */
		bool pushed = s > t && implicit(m, t) && implicit(m, s) && !(f & HM_BIND);
		MCHECK(s == t || pushed, "page %zu in tier %d after a migration to %d returned %ld",
		       i, s, t, rc);
	}
	return 0;
}

static int op_move(struct model *m)
{
	size_t cnt = 1 + rn(m, 12);
	void *pages[16];
	struct hm_store *stores[16];
	int pre[16], st[16], after[16];
	size_t idx[16];

	for (size_t k = 0; k < cnt; k++) {
		idx[k] = rn(m, m->n);
		pages[k] = m->p + idx[k] * m->ps + rn(m, m->ps);
		int t = (int)rn(m, (uint64_t)m->nt);
		stores[k] = m->ts[t];
		m->settled[idx[k]] = false; /* a move takes a bound page elsewhere */
		if (t > 0 && m->t[t].explicit_)
			m->sent[idx[k]] |= 1u << t;
	}
	long q = hm_move(cnt, pages, NULL, pre, 0);
	MCHECK(q == 0, "query: %ld", q);
	char line[200];
	int len = snprintf(line, sizeof line, "move");
	for (size_t k = 0; k < cnt && len < (int)sizeof line - 16; k++)
		len += snprintf(line + len, sizeof line - (size_t)len, " %zu->%d", idx[k],
		                hm_tier_index(stores[k]));
	note("%s", line);
	long rc = hm_move(cnt, pages, stores, st, 0);
	len = snprintf(line, sizeof line, "  -> %ld:", rc);
	for (size_t k = 0; k < cnt && len < (int)sizeof line - 8; k++)
		len += snprintf(line + len, sizeof line - (size_t)len, " %d", st[k]);
	note("%s", line);
	MCHECK(rc >= 0, "hm_move: %ld %s", rc, hm_errormsg());
	long notmoved = 0;
	for (size_t k = 0; k < cnt; k++)
		notmoved += st[k] != hm_tier_index(stores[k]);
	MCHECK(rc == notmoved, "returned %ld, %ld statuses differ from their target", rc, notmoved);
	if (hm_move(cnt, pages, NULL, after, 0))
		MFAIL("query after: %s", hm_errormsg());
	for (size_t k = 0; k < cnt; k++) {
		size_t i = idx[k];
		int t = hm_tier_index(stores[k]), s = st[k];
		/* The same page twice in the list: only its last move is checked. */
		bool last = true;
		for (size_t j = k + 1; j < cnt; j++)
			last &= idx[j] != i;
		if (!m->live[i]) {
			MCHECK(s == -EFAULT, "unmapped page %zu: %d", i, s);
			continue;
		}
		if (check_where(m, i, after[k]))
			return -1;
		if (i < PART)
			continue; /* the second thread moves it too */
		if (!m->written[i]) {
			MCHECK(s == -ENOENT ||
			           (t == 0 && s == 0 && (pre[k] == 0 || m->engine_ever)) ||
			           (s == 0 && m->engine_ever) || (m->bind[i] == 1 && s == -EBUSY),
			       "page %zu never written: status %d toward %d", i, s, t);
			continue;
		}
		if (m->bind[i] == 1 && t > 0) {
			MCHECK(s == -EBUSY, "page %zu bound to DRAM: status %d toward %d", i, s, t);
			continue;
		}
		if (s == -ENOENT && m->zero_gone_ok[i] && all_zero(sh(m, i), m->ps))
			continue;
		if (pre[k] == -ENOENT) {
			MCHECK(s == -ENOENT || s == t, "page %zu of zeros nowhere: status %d", i,
			       s);
			continue;
		}
		if (m->engine_ever && s == 0)
			continue; /* a promotion took it up meanwhile */
		MCHECK(s == t || s == -ENOSPC || (t == 0 && s == -ENOMEM),
		       "page %zu in %d toward %d: status %d, then in %d (bound %d, zeros %d)", i,
		       pre[k], t, s, after[k], m->bind[i] - 1, all_zero(sh(m, i), m->ps));
		if (t > 0 && (m->closed & (1u << t)))
			MCHECK(s == -ENOSPC || pre[k] == t, "page %zu toward closed tier %d: %d", i,
			       t, s);
		if (s == t && t > 0 && last && !(m->engine_ever && after[k] == 0)) {
			bool pushed = after[k] > t && implicit(m, t) && implicit(m, after[k]) &&
			              m->bind[i] != t + 1;
			MCHECK(after[k] == t || pushed, "page %zu moved to %d is in %d", i, t,
			       after[k]);
		}
	}
	return 0;
}

static int op_query(struct model *m)
{
	note("query all");
	return check_query_all(m);
}

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
	uint64_t *last = ctx;

	if (done < last[0] || done > total)
		last[1] = 1;
	last[0] = done;
}

static int op_evacuate(struct model *m)
{
	int t = 1 + (int)rn(m, (uint64_t)m->nt - 1);
	uint64_t prog[2] = {0, 0};
	int was = hm_tier_get(m->ts[t]);

	note("evacuate tier %d (flags %#x)", t, was);
	int rc = hm_store_evacuate(m->ts[t], on_progress, prog);
	note("  -> %d %s", rc, rc ? hm_errormsg() : "");
	MCHECK(!prog[1], "progress went backwards or past its total");
	/* Pages bound to the tier may have left it. */
	for (size_t i = 0; i < m->n; i++)
		if (m->bind[i] == t + 1)
			m->settled[i] = false;
	int now = hm_tier_get(m->ts[t]);
	if (rc == 0) {
		struct hm_tier_stats s;
		MCHECK(now & HM_TIER_CLOSED, "flags %#x after an evacuation", now);
		MCHECK(hm_tier_stats(m->ts[t], &s) == 0 && s.pages == 0,
		       "tier %d holds %llu pages after its evacuation", t,
		       (unsigned long long)s.pages);
		m->closed |= 1u << t;
		if (m->t[t].backstop)
			for (size_t i = 0; i < m->n; i++)
				if (m->written[i] && all_zero(sh(m, i), m->ps))
					m->zero_gone_ok[i] = true;
		if (check_query_all(m))
			return -1;
		if (m->t[t].backstop) {
			/*
			 * Pages of the tiers in front come down to the backstop
			 * when those are full: without it, evictions have
			 * nowhere to go and fail (as documented).
			 */
			note("reopen tier %d (the backstop)", t);
			MCHECK(hm_tier_set(m->ts[t], now & ~HM_TIER_CLOSED) == 0, "%s",
			       hm_errormsg());
			m->closed &= ~(1u << t);
		}
	} else {
		MCHECK(rc == -ENOSPC, "evacuation: %d %s", rc, hm_errormsg());
		MCHECK(now == was, "flags %#x after a failed evacuation, %#x before", now, was);
		/* Nothing lost. */
		if (check_data(m, 0, m->n))
			return -1;
	}
	return 0;
}

static int op_flags(struct model *m)
{
	int t = 1 + (int)rn(m, (uint64_t)m->nt - 1);
	int f = hm_tier_get(m->ts[t]);

	MCHECK(f >= 0, "%d", f);
	if (f & HM_TIER_CLOSED) {
		note("reopen tier %d", t);
		MCHECK(hm_tier_set(m->ts[t], f & ~HM_TIER_CLOSED) == 0, "%s", hm_errormsg());
		m->closed &= ~(1u << t);
		return 0;
	}
	if (m->t[t].backstop)
		return 0;
	if (m->t[t].explicit_ && chance(m, 50)) {
		note("tier %d implicit", t);
		MCHECK(hm_tier_set(m->ts[t], f & ~(HM_TIER_EXPLICIT | HM_TIER_EMERGENCY)) == 0,
		       "%s", hm_errormsg());
		m->t[t].explicit_ = m->t[t].emergency = false;
	} else if (!m->t[t].explicit_) {
		bool em = chance(m, 30);
		note("tier %d explicit%s", t, em ? ", emergency" : "");
		/* Pages already there, or on their way, may stay. */
		for (size_t i = 0; i < m->n; i++)
			m->sent[i] |= 1u << t;
		MCHECK(hm_tier_set(m->ts[t], f | HM_TIER_EXPLICIT | (em ? HM_TIER_EMERGENCY : 0)) ==
		           0,
		       "%s", hm_errormsg());
		m->t[t].explicit_ = true;
		m->t[t].emergency = em;
	}
	return 0;
}

static int op_engine(struct model *m)
{
	m->engine = !m->engine;
	m->engine_ever |= m->engine;
	note("tiering %s", m->engine ? "on" : "off");
	int rc = hm_store_ctl(m->ch, m->engine ? "tiering=hotness:threshold=2" : "tiering=none");
	MCHECK(rc == 0, "%d %s", rc, hm_errormsg());
	return 0;
}

/*
 * A drop of pages bound to a full lower tier fails with -ENOSPC, and they
 * stay in DRAM (docs/tiers.md, "if it is full the pages stay in DRAM").
 */
static bool bound_lower(const struct model *m, size_t i0, size_t n)
{
	for (size_t i = i0; i < i0 + n; i++)
		if (m->bind[i] > 1)
			return true;
	return false;
}

static int op_sync(struct model *m)
{
	size_t i0, n;
	static const int fl[] = {HM_SYNC_SYNC, HM_SYNC_ASYNC, HM_SYNC_SYNC | HM_SYNC_INVALIDATE,
	                         HM_SYNC_INVALIDATE};

	if (!pick_range(m, 24, &i0, &n, false))
		return 0;
	int f = fl[rn(m, 4)];
	note("sync %zu+%zu flags %#x", i0, n, f);
	int rc = hm_sync(m->p + i0 * m->ps, n * m->ps, f);
	MCHECK(rc == 0 || (rc == -ENOSPC && bound_lower(m, i0, n)), "%d %s", rc, hm_errormsg());
	return 0;
}

static int op_advise(struct model *m)
{
	size_t i0, n;
	static const int adv[] = {HM_ADV_NORMAL,   HM_ADV_RANDOM,   HM_ADV_SEQUENTIAL,
	                          HM_ADV_WILLNEED, HM_ADV_DONTNEED, HM_ADV_NOREUSE};

	if (!pick_range(m, 24, &i0, &n, false))
		return 0;
	int a = adv[rn(m, 6)];
	note("advise %zu+%zu %d", i0, n, a);
	int rc = hm_advise(m->p + i0 * m->ps, n * m->ps, a);
	MCHECK(rc == 0 || (rc == -ENOSPC && a == HM_ADV_DONTNEED && bound_lower(m, i0, n)), "%d %s",
	       rc, hm_errormsg());
	return 0;
}

static int op_unmap(struct model *m)
{
	size_t i0, n, live = 0;

	for (size_t i = PART; i < m->n; i++)
		live += m->live[i];
	if (live < m->n / 2 || !pick_range(m, 6, &i0, &n, true))
		return 0;
	note("unmap %zu+%zu", i0, n);
	MCHECK(hmunmap(m->p + i0 * m->ps, n * m->ps) == 0, "%s", hm_errormsg());
	for (size_t i = i0; i < i0 + n; i++) {
		m->live[i] = false;
		/* An API-form chain keeps the part's pages; hmmap()'s drops them. */
		if (!m->api)
			m->written[i] = false, memset(sh(m, i), 0, m->ps);
		m->bind[i] = 0; /* the unmap drops the part's bindings */
		m->settled[i] = false;
	}
	return 0;
}

/* ---- an episode ---- */

static int episode_end(struct model *m)
{
	uint64_t a[MAXT];
	size_t last = SIZE_MAX;

	atomic_store(&m->stop, 1);
	pthread_join(m->th, NULL);
	MCHECK(!atomic_load(&m->bad), "second thread: %s", m->bad_msg);
	note("end: the partition made %llu rounds", (unsigned long long)atomic_load(&m->rounds));
	for (int j = 0; j < PART; j++)
		MCHECK(!memcmp(m->p + (size_t)j * m->ps, m->tshadow[j], CPG),
		       "partition page %d differs at the end", j);
	if (check_data(m, 0, m->n) || check_query_all(m) || check_stats(m))
		return -1;
	/* Reopen every tier and drop the bindings: the end is the chain's own. */
	for (int t = 1; t < m->nt; t++)
		hm_tier_set(m->ts[t], hm_tier_get(m->ts[t]) & ~HM_TIER_CLOSED);
	m->closed = 0;
	if (m->api) {
		/*
		 * The API form keeps a chain's data between mappings: unmap
		 * everything, map again, every page (unmapped parts included)
		 * reads as before.
		 */
		/*
		 * Each unmap drops the bindings of its page before it writes
		 * it back: a binding to a full tier does not fail it.
		 */
		for (size_t i = 0; i < m->n; i++)
			if (m->live[i])
				MCHECK(hmunmap(m->p + i * m->ps, m->ps) == 0, "%s", hm_errormsg());
		note("remap");
		struct hm_cache *c;
		MCHECK(hm_chain_cache(m->ch, &c) == 0, "%s", hm_errormsg());
		int rc = hm_region_map(&m->r, c, m->ch, 0, m->n * m->ps, PROT_READ | PROT_WRITE,
		                       HM_CACHED, m->ps);
		MCHECK(rc == 0, "remap: %d %s", rc, hm_errormsg());
		m->p = hm_region_addr(m->r);
		for (int j = 0; j < PART; j++)
			memset(sh(m, (size_t)j), 0, m->ps),
			    memcpy(sh(m, (size_t)j), m->tshadow[j], CPG);
		for (size_t i = 0; i < m->n; i++) {
			m->live[i] = true;
			m->bind[i] = 0;
			m->written[i] |= i < PART;
			long long off =
			    tu_cmp_mem((unsigned char *)m->p + i * m->ps, sh(m, i), m->ps);
			MCHECK(off < 0, "after the remap page %zu byte %lld: %#x, want %#x", i, off,
			       (unsigned char)m->p[i * m->ps + (size_t)off], sh(m, i)[off]);
		}
		/*
		 * No binding is left: the unmaps dropped them, those of parts
		 * unmapped earlier included. A binding made now goes with the
		 * region's unmap as well, even toward a full tier.
		 */
		int last_t = m->nt - 1;
		MCHECK(hm_bind(m->p + PART * m->ps, m->ps, m->ts[last_t], HM_BIND) == 0, "%s",
		       hm_errormsg());
		m->p[PART * m->ps] ^= 1;
		m->p[PART * m->ps] ^= 1;
		MCHECK(hm_region_unmap(m->r) == 0, "%s", hm_errormsg());
		int tiers = hm_chain_tiers(m->ch);
		MCHECK(tiers == m->nt, "%d", tiers);
		MCHECK(hm_store_close(m->ch) == 0, "%s", hm_errormsg());
		return 0;
	}
	/* hmmap()'s chain drops what is unmapped: all but one page, then the counts. */
	for (size_t i = m->n; i-- > 0;)
		if (m->live[i]) {
			if (last == SIZE_MAX)
				last = i;
			else
				MCHECK(hmunmap(m->p + i * m->ps, m->ps) == 0, "%s", hm_errormsg());
		}
	for (size_t i = 0; i < m->n; i++)
		m->live[i] = i == last;
	note("unmapped all but page %zu", last);
	for (int tries = 0; tries < 3; tries++) {
		uint64_t sum = 0;
		int st[1];
		if (tier_pages(m, a) || query(m, last, 1, st))
			return -1;
		for (int t = 1; t < m->nt; t++)
			sum += a[t];
		if (sum <= 1 && (sum == 0 || st[0] > 0))
			break;
		MCHECK(tries < 2,
		       "after unmapping all but page %zu (in %d) the tiers hold %llu pages", last,
		       st[0], (unsigned long long)sum);
	}
	MCHECK(hmunmap(m->p + last * m->ps, m->ps) == 0, "%s", hm_errormsg());
	return 0;
}

static bool paranoid; /* HMMAP_MODEL_PARANOID: the statistics after every operation */

static int episode(uint64_t seed, int ops)
{
	struct model *m = calloc(1, sizeof *m);
	int rc = -1;

	if (!m)
		return -1;
	m->rnd = seed | 1;
	if (build(m))
		goto out;
	if (pthread_create(&m->th, NULL, part_main, m)) {
		snprintf(fail_msg, sizeof fail_msg, "pthread_create");
		goto out;
	}
	for (int op = 0; op < ops; op++) {
		int r;
		if (atomic_load(&m->bad)) {
			snprintf(fail_msg, sizeof fail_msg, "second thread: %s", m->bad_msg);
			goto stop;
		}
		uint64_t k = rn(m, 100);
		if (k < 25)
			r = op_write(m);
		else if (k < 35)
			r = op_read(m);
		else if (k < 50)
			r = op_bind(m);
		else if (k < 65)
			r = op_move(m);
		else if (k < 70)
			r = op_query(m);
		else if (k < 74)
			r = op_evacuate(m);
		else if (k < 79)
			r = op_flags(m);
		else if (k < 81)
			r = op_engine(m);
		else if (k < 85)
			r = op_sync(m);
		else if (k < 91)
			r = op_advise(m);
		else if (k < 93)
			r = op_unmap(m);
		else if (k < 96) {
			note("stats");
			r = check_stats(m);
		} else {
			note("read all");
			r = check_data(m, 0, m->n);
		}
		if (!r && paranoid)
			r = check_stats(m);
		if (r)
			goto stop;
	}
	rc = episode_end(m);
	goto out;
stop:
	atomic_store(&m->stop, 1);
	pthread_join(m->th, NULL);
out:
	free(m->shadow);
	free(m);
	return rc;
}

struct run {
	int episodes, ops;
};

static int model_child(void *arg)
{
	const struct run *run = arg;
	const char *mode = getenv("HMMAP_FAULT_MODE");

	g_mode = mode ? mode : "thread";
	signal(SIGBUS, on_fatal);
	signal(SIGSEGV, on_fatal);
	for (g_ep = 0; g_ep < run->episodes; g_ep++) {
		hist_n = 0;
		uint64_t s = tu_seed(0x7ee5 + (uint64_t)g_ep * 7919 + (g_mode[0] == 's' ? 1 : 0));
		if (episode(s, run->ops)) {
			printf("mismatch: %s\n", fail_msg);
			dump_history(stdout);
			return 1;
		}
	}
	printf("%d episodes of %d operations, seed %llu\n", run->episodes, run->ops,
	       (unsigned long long)g_seed);
	return 0;
}

static struct run the_run;

static void t_model_thread(void)
{
	static const char *const env[] = {"HMMAP_FAULT_MODE=thread", NULL};

	TU_CHILD_RESULT(tu_child(env, model_child, &the_run));
}

static void t_model_sigbus(void)
{
	static const char *const env[] = {"HMMAP_FAULT_MODE=sigbus", NULL};

	TU_CHILD_RESULT(tu_child(env, model_child, &the_run));
}

int main(void)
{
	const char *e = getenv("HMMAP_TEST_SEED");

	g_seed = e ? strtoull(e, NULL, 10) : 1;
	if (!e)
		setenv("HMMAP_TEST_SEED", "1", 1);
	the_run.episodes = 4;
	the_run.ops = 400;
	if (tu_under("asan") || tu_under("tsan")) {
		the_run.episodes = 2;
		the_run.ops = 150;
	}
	paranoid = getenv("HMMAP_MODEL_PARANOID");
	if (getenv("HMMAP_MODEL_OPS"))
		the_run.ops = atoi(getenv("HMMAP_MODEL_OPS"));
	if (getenv("HMMAP_MODEL_EPISODES"))
		the_run.episodes = atoi(getenv("HMMAP_MODEL_EPISODES"));
	if (!tu_tmpdir()) {
		printf("no scratch directory\n");
		return 1;
	}
	RUN(t_model_thread);
	RUN(t_model_sigbus);
	tu_cleanup();
	return test_done();
}
