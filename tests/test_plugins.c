/* SPDX-License-Identifier: MIT */
/*
 * Plug-ins: a program's own cache policy, store and tiering policy
 * registered at run time and used by name like the built-in ones; plug-in
 * libraries loaded with hm_plugin_load() and through HMMAP_PLUGINS (the
 * example examples/plugins/mru.c, and tests/plugins/ for the failures);
 * and every way a registration or a load can be refused, which must change
 * nothing.
 */
#include "harness.h"
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hmmap.h"

#define PG 4096

static char plugin_dir[512];

/* BUILD/NAME, e.g. "examples/plugins/mru.so" (an absolute path). */
static void built(char *buf, size_t n, const char *name)
{
	snprintf(buf, n, "%s/%s", plugin_dir, name);
}

static const char *msg_has(const char *needle)
{
	return strstr(hm_errormsg(), needle) ? hm_errormsg() : NULL;
}

/* ---- a policy of the test's own: evicts the highest slot (deterministic) ---- */

static _Atomic unsigned long hi_inserts, hi_victims, hi_creates, hi_destroys;
static char hi_opts[64];

struct hi {
	uint32_t capacity;
	unsigned char *in;
};

static int hi_create(void **state, uint32_t capacity, const char *options)
{
	struct hi *h = calloc(1, sizeof *h);

	if (!h || !(h->in = calloc(capacity, 1))) {
		free(h);
		return hm_plugin_error(-ENOMEM, "highest: out of memory");
	}
	if (!strcmp(options, "fail"))
		return free(h->in), free(h), hm_plugin_error(-EINVAL, "highest: told to fail");
	snprintf(hi_opts, sizeof hi_opts, "%s", options);
	h->capacity = capacity;
	*state = h;
	atomic_fetch_add(&hi_creates, 1);
	return 0;
}

static void hi_destroy(void *state)
{
	struct hi *h = state;

	free(h->in);
	free(h);
	atomic_fetch_add(&hi_destroys, 1);
}

static void hi_insert(void *state, uint32_t slot, uint64_t key)
{
	((struct hi *)state)->in[slot] = 1;
	atomic_fetch_add(&hi_inserts, 1);
}

static void hi_hit(void *state, uint32_t slot)
{
}

static int hi_victim(void *state, uint32_t *slot)
{
	struct hi *h = state;

	for (uint32_t s = h->capacity; s-- > 0;) {
		if (h->in[s]) {
			h->in[s] = 0;
			*slot = s;
			atomic_fetch_add(&hi_victims, 1);
			return 0;
		}
	}
	return -ENOENT;
}

static void hi_remove(void *state, uint32_t slot)
{
	((struct hi *)state)->in[slot] = 0;
}

static const struct hm_policy_ops highest = {
	.abi = HM_POLICY_ABI,
	.name = "highest",
	.summary = "evicts the resident page in the highest slot (tests)",
	.slot_bytes = 1,
	.create = hi_create,
	.destroy = hi_destroy,
	.insert = hi_insert,
	.hit = hi_hit,
	.victim = hi_victim,
	.remove = hi_remove,
};

/* ---- a store of the test's own: a pattern in RAM, counting its calls ---- */

struct gen {
	size_t size;
	unsigned char *data;
};

static struct gen *gen_last;
static _Atomic unsigned long gen_reads, gen_writes, gen_flushes, gen_closes;

static unsigned char gen_byte(uint64_t off)
{
	return (unsigned char)((off * 2654435761u) >> 13);
}

static int gen_open(void **priv, const char *rest, int flags, struct hm_store_info *info)
{
	uint64_t size;
	struct gen *g;

	if (hm_parse_size(rest, &size) || !size || size > (64u << 20))
		return hm_plugin_error(-EINVAL, "gen: bad size '%s'", rest);
	g = calloc(1, sizeof *g);
	if (!g || !(g->data = malloc(size))) {
		free(g);
		return hm_plugin_error(-ENOMEM, "gen: out of memory");
	}
	for (uint64_t i = 0; i < size; i++)
		g->data[i] = gen_byte(i);
	g->size = size;
	info->size = size;
	info->props = flags & HM_STORE_RDONLY ? HM_PROP_READONLY : 0;
	info->align = 1;
	*priv = g;
	gen_last = g;
	return 0;
}

static void gen_close(void *priv)
{
	struct gen *g = priv;

	free(g->data);
	free(g);
	gen_last = NULL;
	atomic_fetch_add(&gen_closes, 1);
}

static int gen_read(void *priv, void *buf, size_t len, uint64_t off)
{
	struct gen *g = priv;
	size_t n = off >= g->size ? 0 : (g->size - off < len ? g->size - off : len);

	memcpy(buf, g->data + off, n);
	memset((char *)buf + n, 0, len - n);
	atomic_fetch_add(&gen_reads, 1);
	return 0;
}

static int gen_write(void *priv, const void *buf, size_t len, uint64_t off)
{
	struct gen *g = priv;

	if (off > g->size || len > g->size - off)
		return hm_plugin_error(-ENOSPC, "gen: write past the end");
	memcpy(g->data + off, buf, len);
	atomic_fetch_add(&gen_writes, 1);
	return 0;
}

static int gen_flush(void *priv)
{
	atomic_fetch_add(&gen_flushes, 1);
	return 0;
}

static int gen_persist(void *priv, uint64_t off, size_t len)
{
	return 0;
}

static const struct hm_store_ops gen = {
	.abi = HM_STORE_ABI,
	.scheme = "gen",
	.summary = "a pattern in RAM (tests)",
	.open = gen_open,
	.close = gen_close,
	.read = gen_read,
	.write = gen_write,
	.flush = gen_flush,
};

/* ---- a tiering policy of the test's own: counts what it is told ---- */

static _Atomic unsigned long tc_ticks, tc_touches, tc_creates;

static int tc_create(void **state, uint64_t npages, const char *opts)
{
	if (*opts)
		return hm_plugin_error(-EINVAL, "tcount: takes no options ('%s')", opts);
	*state = NULL;
	atomic_fetch_add(&tc_creates, 1);
	return 0;
}

static void tc_destroy(void *state)
{
}

static void tc_touch(void *state, uint64_t idx, int how)
{
	atomic_fetch_add(&tc_touches, 1);
}

static void tc_tick(void *state, struct hm_tier_ctx *ctx)
{
	atomic_fetch_add(&tc_ticks, 1);
}

static const struct hm_tier_policy_ops tcount = {
	.abi = HM_TIER_POLICY_ABI,
	.name = "tcount",
	.summary = "counts touches and ticks (tests)",
	.create = tc_create,
	.destroy = tc_destroy,
	.touch = tc_touch,
	.tick = tc_tick,
};

/* A tiering policy that promotes a page not in DRAM at every chance it gets. */
static _Atomic uint64_t tp_promoted;

static int tp_create(void **state, uint64_t npages, const char *opts)
{
	uint64_t *n = malloc(sizeof *n);

	(void)opts;
	if (!n)
		return -ENOMEM;
	*n = npages;
	*state = n;
	return 0;
}

static void tp_touch(void *state, uint64_t idx, int how)
{
	(void)state, (void)idx, (void)how;
}

static void tp_tick(void *state, struct hm_tier_ctx *ctx)
{
	uint64_t n = *(uint64_t *)state;

	for (uint64_t i = 0; i < n; i++) {
		if (hm_tier_where(ctx, i) <= 0)
			continue;
		int rc = hm_tier_promote(ctx, i);
		if (rc == 0)
			atomic_fetch_add(&tp_promoted, 1);
		else
			break; /* out of this tick's rate, or of room */
	}
}

static const struct hm_tier_policy_ops tpromote = {
	.abi = HM_TIER_POLICY_ABI,
	.name = "tpromote",
	.summary = "promotes every page it can (tests)",
	.create = tp_create,
	.destroy = free,
	.touch = tp_touch,
	.tick = tp_tick,
};

/* ---- cases ---- */

static void t_policy_registered(void)
{
	const struct hm_policy_ops *ops;
	const char *opts;
	struct hm_cache *c;
	size_t n;

	CHECKF(hm_policy_register(&highest) == 0, "%s", hm_errormsg());
	/* Found by name, with its options, and listed after the built-ins. */
	/* No name: -EINVAL, whether options follow or not; an unknown one: -ENOENT. */
	CHECK(hm_policy_lookup("", &ops, &opts) == -EINVAL && msg_has("empty policy name"));
	CHECK(hm_policy_lookup(":x", &ops, &opts) == -EINVAL && msg_has("empty policy name"));
	CHECK(hm_policy_lookup("nosuch:x", &ops, &opts) == -ENOENT);
	CHECK(hm_policy_lookup("highest:k=v", &ops, &opts) == 0 && ops == &highest &&
	      !strcmp(opts, "k=v"));
	const struct hm_policy_ops *const *l = hm_policy_list(&n);
	CHECK(n >= 2 && l[n - 1] == &highest && !strcmp(l[0]->name, "fifo"));
	/* A cache of 64 pages over a region of 256: every eviction is the policy's. */
	CHECKF(hm_cache_new(&c, 64 * PG, "highest:k=v") == 0, "%s", hm_errormsg());
	CHECK(!strcmp(hi_opts, "k=v") && atomic_load(&hi_creates) == 1);
	struct hm_store *s;
	struct hm_region *r;
	CHECK(hm_store_open(&s, "mem:1M", 0) == 0);
	CHECKF(hm_region_map(&r, c, s, 0, 256 * PG, PROT_READ | PROT_WRITE, HM_CACHED, PG) == 0,
	       "%s", hm_errormsg());
	unsigned char *p = hm_region_addr(r);
	CHECK(hm_advise(p, 256 * PG, HM_ADV_RANDOM) == 0);
	for (size_t i = 0; i < 256; i++)
		p[i * PG] = (unsigned char)i;
	for (size_t i = 0; i < 256; i++)
		CHECKF(p[i * PG] == (unsigned char)i, "page %zu", i);
	struct hm_stats st;
	CHECK(hm_region_stats(r, &st) == 0);
	CHECKF(atomic_load(&hi_inserts) >= 256 && atomic_load(&hi_victims) >= 192 &&
		       st.evictions >= 192,
	       "inserts %lu victims %lu evictions %llu", atomic_load(&hi_inserts),
	       atomic_load(&hi_victims), (unsigned long long)st.evictions);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
	CHECK(atomic_load(&hi_destroys) == 1);
	/* The policy's own refusal of its options reaches the caller. */
	CHECK(hm_cache_new(&c, 64 * PG, "highest:fail") == -EINVAL && msg_has("told to fail"));
}

static void t_store_registered(void)
{
	size_t n;

	CHECKF(hm_store_register(&gen) == 0, "%s", hm_errormsg());
	const struct hm_store_ops *const *l = hm_store_list(&n);
	CHECK(n >= 2 && l[n - 1] == &gen && !strcmp(l[0]->scheme, "file"));

	/* hmmap() with the plug-in's URI: its data, and its writes go back to it. */
	size_t len = 1 << 20;
	unsigned char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED, "gen:1M", 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	CHECK(gen_last && atomic_load(&gen_reads) == 0); /* nothing read before a touch */
	for (size_t i = 0; i < len; i += 997)
		CHECKF(p[i] == gen_byte(i), "byte %zu", i);
	CHECK(atomic_load(&gen_reads) > 0);
	CHECK(!strcmp(hm_store_scheme(hm_region_store(hm_region_find(p))), "gen"));
	for (size_t i = 0; i < len; i += 2 * PG)
		p[i + 5] = (unsigned char)~gen_byte(i + 5);
	CHECK(hmsync(p, len, MS_SYNC) == 0);
	CHECK(atomic_load(&gen_writes) > 0 && atomic_load(&gen_flushes) > 0);
	for (size_t i = 0; i < len; i += PG) {
		unsigned char want = (i / PG) % 2 ? gen_byte(i + 5) : (unsigned char)~gen_byte(i + 5);
		CHECKF(gen_last->data[i + 5] == want, "store byte %zu", i + 5);
	}
	CHECK(hmunmap(p, len) == 0);
	CHECK(atomic_load(&gen_closes) == 1 && !gen_last);

	/* Its refusal, with its message; nothing is left open. */
	errno = 0;
	CHECK(hmmap(NULL, len, PROT_READ, HM_CACHED, "gen:bogus", 0) == MAP_FAILED);
	CHECK(errno == EINVAL && msg_has("gen: bad size 'bogus'"));
	CHECK(atomic_load(&gen_closes) == 1);
}

static void t_tier_policy_registered(void)
{
	size_t n;

	CHECKF(hm_tier_policy_register(&tcount) == 0, "%s", hm_errormsg());
	const struct hm_tier_policy_ops *const *l = hm_tier_policy_list(&n);
	CHECK(n >= 2 && l[n - 1] == &tcount);
	/* Options are checked when the chain is opened, by the policy. */
	struct hm_store *ch;
	CHECK(hm_store_open(&ch, "tiers:dram:256K,tiering=tcount:x=1>mem:4M", 0) == -EINVAL &&
	      msg_has("tcount: takes no options"));
	/* An unknown name lists the registered ones too. */
	CHECK(hm_store_open(&ch, "tiers:dram:256K,tiering=nope>mem:4M", 0) == -EINVAL &&
	      msg_has("tcount"));
	size_t len = 1 << 20;
	unsigned char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED,
				 "tiers:dram:256K,tiering=tcount>mem:4M", 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	for (size_t i = 0; i < len; i += PG)
		p[i] = (unsigned char)(i / PG);
	/* The engine runs the policy: touches from the faults, and ticks. */
	for (int i = 0; i < 100 && !atomic_load(&tc_ticks); i++)
		usleep(50 * 1000);
	CHECKF(atomic_load(&tc_ticks) > 0 && atomic_load(&tc_touches) >= len / PG,
	       "ticks %lu touches %lu", atomic_load(&tc_ticks), atomic_load(&tc_touches));
	for (size_t i = 0; i < len; i += PG)
		CHECKF(p[i] == (unsigned char)(i / PG), "page %zu", i / PG);
	CHECK(hmunmap(p, len) == 0);
}

/*
 * The rate limit holds below a page per tick too: at rate=16K (four 4 KiB
 * pages a second, 1.6 KiB a 100 ms tick) pages move, and no faster than
 * the rate (a tick's budget used to be dropped unless it held a page).
 */
static void t_slow_rate_moves(void)
{
	const size_t n = 256, len = n * PG;
	struct timespec a, b;

	CHECKF(hm_tier_policy_register(&tpromote) == 0, "%s", hm_errormsg());
	unsigned char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED,
				 "tiers:dram:256K,tiering=tpromote,rate=16K,hot=0.9>mem:4M", 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	if (p == MAP_FAILED)
		return;
	for (size_t i = 0; i < len; i += PG)
		p[i] = (unsigned char)(i / PG);
	clock_gettime(CLOCK_MONOTONIC, &a);
	uint64_t p0 = atomic_load(&tp_promoted);
	usleep(1500 * 1000);
	uint64_t moved = atomic_load(&tp_promoted) - p0;
	clock_gettime(CLOCK_MONOTONIC, &b);
	double secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
	CHECKF(moved > 0, "no page moved in %.1f s at 16 KiB/s", secs);
	/* At most the rate over the time, plus one tick's burst and a page. */
	CHECKF(moved * PG <= (uint64_t)(16384 * (secs + 0.1)) + 2 * PG,
	       "%llu pages moved in %.1f s at 16 KiB/s", (unsigned long long)moved, secs);
	for (size_t i = 0; i < len; i += PG)
		CHECK(p[i] == (unsigned char)(i / PG));
	CHECK(hmunmap(p, len) == 0);
}

static void t_bad_registrations(void)
{
	size_t np, ns, nt;

	hm_policy_list(&np);
	hm_store_list(&ns);
	hm_tier_policy_list(&nt);

	CHECK(hm_policy_register(NULL) == -EINVAL && msg_has("NULL"));
	CHECK(hm_store_register(NULL) == -EINVAL);
	CHECK(hm_tier_policy_register(NULL) == -EINVAL);

	struct hm_policy_ops p = highest;
	p.name = "other";
	p.abi = HM_POLICY_ABI + 1;
	CHECK(hm_policy_register(&p) == -EINVAL && msg_has("ABI"));
	p.abi = HM_POLICY_ABI;
	static const char *const bad_names[] = { "", "Upper", "1st", "a:b", "a,b", "a b",
						 "a=b", "a.b", "_x",
						 "abcdefghijklmnopqrstuvwxyz0123456" };
	for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
		p.name = bad_names[i];
		CHECKF(hm_policy_register(&p) == -EINVAL, "name '%s'", bad_names[i]);
	}
	p.name = NULL;
	CHECK(hm_policy_register(&p) == -EINVAL);
	p.name = "other";
	/* `hmmap policies` would print "(null)". */
	p.summary = NULL;
	CHECK(hm_policy_register(&p) == -EINVAL && msg_has("summary"));
	p.summary = highest.summary;
	p.victim = NULL;
	CHECK(hm_policy_register(&p) == -EINVAL && msg_has("victim"));
	p.victim = highest.victim;
	p.flags = 0x80;
	CHECK(hm_policy_register(&p) == -EINVAL && msg_has("flags"));
	p.flags = HM_POLICY_REPLAY_ONLY;
	CHECK(hm_policy_register(&p) == -EINVAL && msg_has("next_use"));
	p.flags = 0;
	/* Taken names: a built-in, and one registered before. */
	p.name = "clock";
	CHECK(hm_policy_register(&p) == -EEXIST && msg_has("clock"));
	p.name = "highest";
	CHECK(hm_policy_register(&p) == -EEXIST);

	struct hm_store_ops s = gen;
	s.abi = 0;
	CHECK(hm_store_register(&s) == -EINVAL && msg_has("ABI"));
	s.abi = HM_STORE_ABI;
	s.scheme = "file";
	CHECK(hm_store_register(&s) == -EEXIST);
	s.scheme = "gen";
	CHECK(hm_store_register(&s) == -EEXIST);
	s.scheme = "a:b";
	CHECK(hm_store_register(&s) == -EINVAL);
	s.scheme = "a/b";
	CHECK(hm_store_register(&s) == -EINVAL);
	s.scheme = "x+y.z"; /* a URI scheme may hold these */
	s.summary = NULL;
	CHECK(hm_store_register(&s) == -EINVAL && msg_has("summary"));
	s.summary = gen.summary;
	s.read = NULL;
	CHECK(hm_store_register(&s) == -EINVAL && msg_has("read"));
	s.read = gen.read;
	s.persist = gen_persist;
	CHECK(hm_store_register(&s) == -EINVAL && msg_has("persist"));

	struct hm_tier_policy_ops t = tcount;
	t.abi = 7;
	CHECK(hm_tier_policy_register(&t) == -EINVAL);
	t.abi = HM_TIER_POLICY_ABI;
	t.name = "hotness";
	CHECK(hm_tier_policy_register(&t) == -EEXIST);
	t.name = "other";
	t.summary = NULL;
	CHECK(hm_tier_policy_register(&t) == -EINVAL && msg_has("summary"));
	t.summary = tcount.summary;
	t.tick = NULL;
	CHECK(hm_tier_policy_register(&t) == -EINVAL && msg_has("tick"));

	/* Nothing of that was registered. */
	size_t np2, ns2, nt2;
	hm_policy_list(&np2);
	hm_store_list(&ns2);
	hm_tier_policy_list(&nt2);
	CHECK(np2 == np && ns2 == ns && nt2 == nt);
	/* A URI with a scheme nobody registered is still an error, not a file. */
	struct hm_store *st;
	CHECK(hm_store_open(&st, "other:1M", 0) == -EINVAL && msg_has("unknown store scheme"));
}

static char names[HM_PLUGINS_MAX + 1][16];

static int fill_registry(void *arg)
{
	/* Each registration keeps its ops: one table each. */
	static struct hm_policy_ops ps[HM_PLUGINS_MAX + 1];
	size_t n0, n;
	int i, rc = 0;

	hm_policy_list(&n0);
	for (i = 0; i <= HM_PLUGINS_MAX; i++) {
		snprintf(names[i], sizeof names[i], "p%d", i);
		ps[i] = highest;
		ps[i].name = names[i];
		rc = hm_policy_register(&ps[i]);
		if (rc)
			break;
	}
	hm_policy_list(&n);
	printf("registered %d, then %d (%s); listed %zu -> %zu\n", i, rc, hm_errormsg(), n0, n);
	return rc == -ENOSPC && i == HM_PLUGINS_MAX && n == n0 + HM_PLUGINS_MAX &&
			       msg_has("p32") ? 0 : 1;
}

static void t_registry_full(void)
{
	/* In a child: the registry is for the life of the process. */
	int st = tu_child(NULL, fill_registry, NULL);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", tu_status_str(st));
}

/* Registrations race lookups and listings without a lock between them. */
static _Atomic int racing;

static void *lookup_loop(void *arg)
{
	const struct hm_policy_ops *ops;
	const char *opts;
	unsigned long seen = 0;

	while (atomic_load(&racing)) {
		size_t n;
		const struct hm_policy_ops *const *l = hm_policy_list(&n);
		for (size_t i = 0; i < n; i++)
			seen += l[i]->name[0] != 0;
		if (hm_policy_lookup("clock", &ops, &opts) || strcmp(ops->name, "clock"))
			return (void *)&racing;
	}
	return seen ? NULL : (void *)&racing;
}

static int race_registry(void *arg)
{
	static struct hm_policy_ops ps[HM_PLUGINS_MAX];
	pthread_t t[2];
	void *r0, *r1;
	int bad = 0;

	atomic_store(&racing, 1);
	for (int i = 0; i < 2; i++)
		if (pthread_create(&t[i], NULL, lookup_loop, NULL))
			return 2;
	for (int i = 0; i < HM_PLUGINS_MAX; i++) {
		ps[i] = highest;
		snprintf(names[i], sizeof names[i], "r%d", i);
		ps[i].name = names[i];
		bad |= hm_policy_register(&ps[i]) != 0;
		usleep(100);
	}
	atomic_store(&racing, 0);
	pthread_join(t[0], &r0);
	pthread_join(t[1], &r1);
	return bad || r0 || r1;
}

static void t_registry_race(void)
{
	int st = tu_child(NULL, race_registry, NULL);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", tu_status_str(st));
}

static void t_plugin_library(void)
{
	char mru[600], fails[600], noinit[600];
	const struct hm_policy_ops *ops;
	const char *opts;

	built(mru, sizeof mru, "examples/plugins/mru.so");
	built(fails, sizeof fails, "tests/plugins/fails.so");
	built(noinit, sizeof noinit, "tests/plugins/noinit.so");

	CHECK(hm_policy_lookup("mru", &ops, &opts) == -ENOENT);
	CHECKF(hm_plugin_load(mru) == 0, "%s", hm_errormsg());
	CHECK(hm_policy_lookup("mru:hits=0", &ops, &opts) == 0 && !strcmp(ops->name, "mru"));
	/* Loading it again changes nothing. */
	CHECKF(hm_plugin_load(mru) == 0, "%s", hm_errormsg());

	/* The refusals. */
	CHECK(hm_plugin_load(NULL) == -EINVAL);
	CHECK(hm_plugin_load("") == -EINVAL);
	CHECK(hm_plugin_load("/nonexistent/x.so") == -ENOENT && msg_has("/nonexistent/x.so"));
	CHECK(hm_plugin_load("/etc/passwd") == -ELIBBAD && msg_has("/etc/passwd"));
	CHECK(hm_plugin_load(noinit) == -EINVAL && msg_has("hm_plugin_init"));
	/* An init that fails: its message; what it registered first stays. */
	CHECK(hm_plugin_load(fails) == -EPERM && msg_has("refusing to start") &&
	      msg_has("failed to initialise"));
	CHECK(hm_policy_lookup("half-loaded", &ops, &opts) == 0);
	struct hm_cache *c;
	CHECK(hm_cache_new(&c, 16 * PG, "half-loaded") == 0 && hm_cache_free(c) == 0);
	/* Loaded again, its init runs no more: it is loaded. */
	CHECK(hm_plugin_load(fails) == 0);
}

/*
 * The example policy on a live cache: a loop over 4x the cache. FIFO
 * misses on every page of every pass; MRU keeps most of the cache and
 * misses only on the rest (hits=0: by arrival alone, so sampled hint
 * faults change nothing; guard=0: nothing is read ahead here).
 */
static uint64_t loop_misses(const char *policy)
{
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	struct hm_stats st = { 0 };
	size_t pages = 1024, passes = 3;
	volatile unsigned char sum = 0;

	if (hm_cache_new(&c, 256 * PG, policy))
		return 0;
	if (hm_store_open(&s, "mem:4M", 0) ||
	    hm_region_map(&r, c, s, 0, pages * PG, PROT_READ, HM_CACHED, PG))
		return 0;
	unsigned char *p = hm_region_addr(r);
	hm_advise(p, pages * PG, HM_ADV_RANDOM);
	for (size_t k = 0; k < passes; k++)
		for (size_t i = 0; i < pages; i++)
			sum += p[i * PG];
	hm_region_stats(r, &st);
	hm_region_unmap(r);
	hm_store_close(s);
	hm_cache_free(c);
	return st.misses;
}

static void t_mru_on_a_loop(void)
{
	char mru[600];

	built(mru, sizeof mru, "examples/plugins/mru.so");
	CHECKF(hm_plugin_load(mru) == 0, "%s", hm_errormsg());
	uint64_t fifo = loop_misses("fifo"), m = loop_misses("mru:hits=0,guard=0");
	printf("    loop of 1024 pages x3 through 256: misses fifo %llu, mru %llu\n",
	       (unsigned long long)fifo, (unsigned long long)m);
	CHECKF(fifo >= 3000, "fifo %llu", (unsigned long long)fifo);
	/*
	 * MRU keeps what the cache holds beyond an eviction batch (64) and the
	 * evictor's free room across passes: 2 x 96 hits or more.
	 */
	CHECKF(m >= 1024 && m <= 3072 - 192, "mru %llu", (unsigned long long)m);
	struct hm_cache *c;
	CHECK(hm_cache_new(&c, 16 * PG, "mru:hits=2") == -EINVAL && msg_has("hits='2'"));
	CHECK(hm_cache_new(&c, 16 * PG, "mru:guard=1") == -EINVAL && msg_has("guard='1'"));
}

/*
 * Policies whose victim() breaks its promise (tests/plugins/badvictim.c):
 * a live cache over 4x its size must still evict, keep every byte, and
 * say once on stderr what is wrong, instead of dying of SIGSEGV (a wild
 * slot) or SIGBUS (-ENOENT with a full cache). In a child, which would die.
 */
static int bad_victim_child(void *arg)
{
	const char *name = arg;
	char lib[600], err[4096];
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	struct hm_stats st;
	FILE *f = tmpfile();
	size_t n;

	built(lib, sizeof lib, "tests/plugins/badvictim.so");
	if (!f || dup2(fileno(f), 2) < 0)
		return 10;
	if (hm_plugin_load(lib) || hm_cache_new(&c, 64 * PG, name) ||
	    hm_store_open(&s, "mem:1M", 0) ||
	    hm_region_map(&r, c, s, 0, 256 * PG, PROT_READ | PROT_WRITE, HM_CACHED, PG)) {
		printf("setup: %s\n", hm_errormsg());
		return 11;
	}
	unsigned char *p = hm_region_addr(r);
	hm_advise(p, 256 * PG, HM_ADV_RANDOM);
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < 256; i++)
			p[i * PG + pass] = (unsigned char)(i + pass);
	for (size_t i = 0; i < 256; i++)
		if (p[i * PG] != (unsigned char)i || p[i * PG + 1] != (unsigned char)(i + 1)) {
			printf("page %zu lost its data\n", i);
			return 12;
		}
	if (hm_region_stats(r, &st) || st.evictions < 192) {
		printf("evictions %llu\n", (unsigned long long)st.evictions);
		return 13;
	}
	if (hm_region_unmap(r) || hm_store_close(s) || hm_cache_free(c)) {
		printf("teardown: %s\n", hm_errormsg());
		return 14;
	}
	fflush(stderr);
	rewind(f);
	n = fread(err, 1, sizeof err - 1, f);
	err[n] = 0;
	printf("stderr: %s", err);
	/* Said once, naming the policy and what is wrong. */
	char *first = strstr(err, "victim()");
	if (!first || strstr(first + 1, "victim()") || !strstr(err, name) ||
	    !strstr(err, "broken"))
		return 15;
	return 0;
}

static void t_bad_victims(void)
{
	static const char *const bad[] = { "bad-range", "bad-none", "bad-twice" };

	/* In children, since the old code crashed; the parent has the engine's threads. */
	if (tu_under("tsan"))
		SKIP("TSan kills a child of a multi-threaded parent that starts threads");
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int st = tu_child(NULL, bad_victim_child, (void *)bad[i]);
		CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: %s", bad[i],
		       tu_status_str(st));
	}
}

/* ---- HMMAP_PLUGINS, in children that start with it set ---- */

static int env_good(void *arg)
{
	struct hm_cache *c;
	size_t n;
	int rc = hm_cache_new(&c, 16 * PG, "mru");

	if (rc) {
		printf("hm_cache_new: %s\n", hm_errormsg());
		return 1;
	}
	hm_cache_free(c);
	const struct hm_policy_ops *const *l = hm_policy_list(&n);
	return strcmp(l[n - 1]->name, "mru") ? 2 : 0;
}

static int env_bad(void *arg)
{
	struct hm_cache *c;
	struct hm_store *s;
	const char *want = arg;
	int rc = hm_cache_new(&c, 16 * PG, "clock");

	printf("%s\n", hm_errormsg());
	if (!rc || !strstr(hm_errormsg(), "HMMAP_PLUGINS") || !strstr(hm_errormsg(), want))
		return 1;
	/* Every lookup says so, not only the first. */
	rc = hm_store_open(&s, "mem:1M", 0);
	if (!rc || !strstr(hm_errormsg(), "HMMAP_PLUGINS"))
		return 2;
	return 0;
}

static void t_env_plugins(void)
{
	char mru[600], env[1400], fails[600];

	built(mru, sizeof mru, "examples/plugins/mru.so");
	built(fails, sizeof fails, "tests/plugins/fails.so");
	/* Empty entries are skipped. */
	snprintf(env, sizeof env, "HMMAP_PLUGINS=:%s::", mru);
	const char *good[] = { env, NULL };
	int st = tu_child(good, env_good, NULL);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", tu_status_str(st));

	const char *missing[] = { "HMMAP_PLUGINS=/nonexistent/p.so", NULL };
	st = tu_child(missing, env_bad, "/nonexistent/p.so");
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", tu_status_str(st));

	snprintf(env, sizeof env, "HMMAP_PLUGINS=%s:%s", mru, fails);
	const char *failing[] = { env, NULL };
	st = tu_child(failing, env_bad, "refusing to start");
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", tu_status_str(st));
}

/* The tool takes plug-ins from HMMAP_PLUGINS, and says when one fails. */
static void t_tool(void)
{
	char mru[600], trace[600], cmd[2048], out[8192];
	const char *b = getenv("HMMAP_BUILD");

	built(mru, sizeof mru, "examples/plugins/mru.so");
	tu_path(trace, sizeof trace, "loop.trace");
	FILE *f = fopen(trace, "w");
	CHECK(f);
	for (int k = 0; k < 3; k++)
		for (int i = 0; i < 100; i++)
			fprintf(f, "%d\n", i);
	fclose(f);
	snprintf(cmd, sizeof cmd, "HMMAP_PLUGINS=%s %s/hmmap replay --policy mru:guard=0,lru --cache 50 %s",
		 mru, b ? b : "build", trace);
	CHECKF(tu_run(cmd, out, sizeof out) == 0, "%.300s", out);
	/* Plain MRU: 100 + 2 x 50 misses; LRU: all 300. */
	unsigned long cache, req, miss_mru = 0, miss_lru = 0;
	for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
		if (!strncmp(line, "mru:guard=0 ", 12))
			sscanf(line + 12, "%lu %lu %lu", &cache, &req, &miss_mru);
		if (!strncmp(line, "lru ", 4))
			sscanf(line + 4, "%lu %lu %lu", &cache, &req, &miss_lru);
	}
	CHECKF(miss_mru == 200 && miss_lru == 300, "mru %lu lru %lu", miss_mru, miss_lru);
	/* A policy that cannot be created (out of memory) is a failed run, not bad usage. */
	char bad[600];
	built(bad, sizeof bad, "tests/plugins/badvictim.so");
	snprintf(cmd, sizeof cmd, "HMMAP_PLUGINS=%s %s/hmmap replay --policy bad-nomem --cache 5 %s",
		 bad, b ? b : "build", trace);
	CHECKF(tu_run(cmd, out, sizeof out) == 1 && strstr(out, "out of memory"), "%.300s", out);
	snprintf(cmd, sizeof cmd, "HMMAP_PLUGINS=%s %s/hmmap policies", mru, b ? b : "build");
	CHECKF(tu_run(cmd, out, sizeof out) == 0 && strstr(out, "mru "), "%.300s", out);
	snprintf(cmd, sizeof cmd, "HMMAP_PLUGINS=/nonexistent/p.so %s/hmmap policies 2>&1",
		 b ? b : "build");
	CHECKF(tu_run(cmd, out, sizeof out) == 1 && strstr(out, "/nonexistent/p.so"), "%.300s", out);
}

int main(void)
{
	const char *b = getenv("HMMAP_BUILD");
	char cwd[256];

	if (!getcwd(cwd, sizeof cwd))
		return 1;
	snprintf(plugin_dir, sizeof plugin_dir, "%s%s%s", b && b[0] == '/' ? "" : cwd,
		 b && b[0] == '/' ? "" : "/", b ? b : "build");
	/* First, while nothing in this process has looked HMMAP_PLUGINS up. */
	RUN(t_env_plugins);
	RUN(t_registry_full);
	RUN(t_registry_race);
	RUN(t_policy_registered);
	RUN(t_store_registered);
	RUN(t_tier_policy_registered);
	RUN(t_slow_rate_moves);
	RUN(t_bad_registrations);
	RUN(t_plugin_library);
	RUN(t_mru_on_a_loop);
	RUN(t_bad_victims);
	RUN(t_tool);
	tu_cleanup();
	return test_done();
}
